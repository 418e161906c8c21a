"""The project's container images, built without a Docker engine or a registry (see docs/images.md).

`python -m tests.images build` builds the base images (from Debian packages) and the project's images (from
its Dockerfiles, with buildah), cached by content hash; `python -m tests.images load` imports them into
containerd.
`tests.images.lock` keeps requirements.lock, the one lock the venv and the images install from.
"""
