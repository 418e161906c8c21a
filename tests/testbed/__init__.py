"""The test bed: a real Kubernetes control plane (etcd, kube-apiserver, controllers, kwok) and PostgreSQL."""
