"""Child names and labels derived from the CR name, valid for any legal CR name (truncated + hashed)."""

from __future__ import annotations

import hashlib
import re

from phlo_dagster import constants as c

MANAGER = "phlo-dagster-operator"
# Longest base so that "<base>-<suffix>" and the pod/revision names Kubernetes derives from it stay within 63.
_MAX_BASE = 30
_SUFFIX_MAX = 16
# On the children of a code location other than `phlo` (whose children keep the names and labels of the single
# code server they had before spec.codeLocations): in their selectors, so locations never share pods.
LOCATION_LABEL = "phlo.dev/code-location"
CODE_SERVER_SUFFIX = "code-server"
_LOCATION_HEAD = _SUFFIX_MAX - len("code-") - 7  # room for "-<6 hex>"


def short_hash(*parts: str, length: int = 8) -> str:
    """A stable lowercase hex digest of the parts."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def base(cr_name: str) -> str:
    """A DNS-1035 label prefix (starts with a letter, no dots) unique per CR name."""
    clean = re.sub(r"[^a-z0-9-]", "-", cr_name.lower())
    if not clean[:1].isalpha():
        clean = "p" + clean
    if clean == cr_name and len(clean) <= _MAX_BASE:
        return clean
    head = clean[: _MAX_BASE - 9].rstrip("-")
    return f"{head}-{short_hash(cr_name)}"


def child(cr_name: str, suffix: str) -> str:
    """Name of one child, e.g. child('demo', 'webserver') == 'demo-webserver'."""
    if len(suffix) > _SUFFIX_MAX:
        raise ValueError(f"suffix {suffix!r} longer than {_SUFFIX_MAX}")
    return f"{base(cr_name)}-{suffix}"


def location_suffix(location: str) -> str:
    """Child-name suffix of a code location's code server, Service, NetworkPolicy and PDB: `phlo` keeps
    `code-server`; another name `code-<name>`, shortened and hashed when longer than the suffix allows."""
    if location == c.DEFAULT_CODE_LOCATION_NAME:
        return CODE_SERVER_SUFFIX
    if len(f"code-{location}") <= _SUFFIX_MAX and f"code-{location}" != CODE_SERVER_SUFFIX:
        return f"code-{location}"
    return f"code-{location[:_LOCATION_HEAD].rstrip('-')}-{short_hash(location, length=6)}"


def instance_label(cr_name: str) -> str:
    """The app.kubernetes.io/instance value: the CR name when it is a valid label value, else base()."""
    if len(cr_name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", cr_name):
        return cr_name
    return base(cr_name)


def labels(cr_name: str, component: str) -> dict[str, str]:
    """Standard labels of every child."""
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: instance_label(cr_name),
        c.LABEL_COMPONENT: component,
        c.LABEL_PART_OF: c.APP_NAME,
        c.LABEL_MANAGED_BY: MANAGER,
    }


def selector(cr_name: str, component: str) -> dict[str, str]:
    """The immutable subset used in Deployment/StatefulSet selectors and Service selectors."""
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: instance_label(cr_name),
        c.LABEL_COMPONENT: component,
    }
