"""Orchestrator-neutral capability specs (assets, checks, resources, runs), the results a run returns and
the context it is given. Immutable pydantic v2 models; a bad spec raises :class:`SpecError` naming the spec
and the field. Workflows import these names from capabilities.py, which adds the registry.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "LOG_FIELDS_ATTR",
    "AssetCheckSpec",
    "AssetSpec",
    "CheckResult",
    "DuplicateSpecError",
    "MaterializeResult",
    "PartitionSpec",
    "ResourceSpec",
    "Routing",
    "RunSpec",
    "RuntimeContext",
    "SpecError",
    "StructuredLogger",
    "claim",
]

_KEY_PART = r"[A-Za-z0-9_][A-Za-z0-9_\-]*"
_KEY_RE = re.compile(rf"^{_KEY_PART}(\.{_KEY_PART})*$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CRON_MACROS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}


class SpecError(ValueError):
    """A capability spec failed validation; the message names the spec and the field."""


class DuplicateSpecError(ValueError):
    """Two specs claim the same asset key, check or resource name; the message names both sources."""

    @classmethod
    def defined_twice(cls, what: str, first: str, second: str) -> DuplicateSpecError:
        return cls(f"{what} is defined twice: in {first} and in {second}")


_K = TypeVar("_K")


def claim(owners: dict[_K, str], key: _K, where: str, what: str) -> None:
    """Record that key is defined in where; a key already there raises DuplicateSpecError naming both places.

    The one "defined twice" check of the runtime: the registry, the translation of specs (asset keys, checks,
    resources) and the definitions load (plain Dagster and dbt assets) all claim their keys through it.
    """
    first = owners.get(key)
    if first is not None:
        raise DuplicateSpecError.defined_twice(what, first, where)
    owners[key] = where


def _freeze_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _as_frozenset(value: Any) -> Any:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset([value])
    return frozenset(value) if isinstance(value, Iterable) else value


def _as_tuple(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, Iterable) else value


def _check_key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise ValueError(
            f"{value!r} is not an asset key: use dot-separated parts of letters, digits, '_' or '-' "
            "(e.g. 'raw.orders')"
        )
    return value


def _check_tags(value: Mapping[str, str]) -> Mapping[str, str]:
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"tag {k!r}: keys and values must be strings")
    return MappingProxyType(dict(value))


_TAG_PART = r"[A-Za-z0-9_.\-]{1,63}"
_TAG_KEY_RE = re.compile(rf"^({_TAG_PART}/)?{_TAG_PART}$")
_TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_.\-]{0,63}$")


def _check_asset_tags(value: Mapping[str, str]) -> Mapping[str, str]:
    """Asset tags are indexed by the orchestrator, so keys and values follow Dagster's strict tag rule."""
    for k, v in value.items():
        if not _TAG_KEY_RE.match(k):
            raise ValueError(
                f"tag key {k!r}: use up to 63 of A-Z a-z 0-9 _ . - with at most one '/' namespace prefix"
            )
        if not _TAG_VALUE_RE.match(v):
            raise ValueError(f"tag {k!r} value {v!r}: use up to 63 of A-Z a-z 0-9 _ . -")
    return value


AssetKeyStr = Annotated[str, AfterValidator(_check_key)]
FrozenMap = Annotated[Mapping[str, Any], AfterValidator(_freeze_mapping)]
Tags = Annotated[Mapping[str, str], AfterValidator(_check_tags)]
# Inputs may be any set/sequence (so callers type-check with plain sets and lists); stored frozen.
StrSet = Annotated[Set[str], BeforeValidator(_as_frozenset), AfterValidator(frozenset)]


def _spec_label(model: type[BaseModel], data: Any) -> str:
    ident = None
    if isinstance(data, Mapping):
        ident = data.get("key") or data.get("name") or data.get("kind")
    return f"{model.__name__} {ident!r}" if ident else model.__name__


def _format_errors(model: type[BaseModel], data: Any, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"field '{loc}': {msg}" if loc else msg)
    return f"{_spec_label(model, data)}: " + "; ".join(parts)


class _Spec(BaseModel):
    """Base: frozen, no unknown fields, and validation errors re-raised as SpecError."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SpecError(_format_errors(type(self), data, exc)) from None


class PartitionSpec(_Spec):
    """How an asset is partitioned: a time window (with start, optional end, time zone) or static values."""

    kind: Literal["daily", "hourly", "weekly", "monthly", "static"]
    start_date: date | None = None
    end_date: date | None = None
    timezone: str | None = None
    values: Annotated[Sequence[str], BeforeValidator(_as_tuple), AfterValidator(tuple)] = ()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/London')"
            ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PartitionSpec:
        if self.kind == "static":
            if not self.values:
                raise ValueError("kind 'static' needs at least one entry in 'values'")
            if len(set(self.values)) != len(self.values):
                raise ValueError("'values' has duplicates")
            if self.start_date or self.end_date:
                raise ValueError("kind 'static' takes 'values', not 'start_date'/'end_date'")
        else:
            if self.start_date is None:
                raise ValueError(f"kind {self.kind!r} needs 'start_date'")
            if self.values:
                raise ValueError(f"kind {self.kind!r} takes 'start_date', not 'values'")
            if self.end_date is not None and self.end_date <= self.start_date:
                raise ValueError("'end_date' must be after 'start_date'")
        return self


def _check_cron(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    fields = value.split()
    if value in _CRON_MACROS or (
        len(fields) == 5 and all(re.match(r"^[\d*/,\-A-Za-z?#LW]+$", f) for f in fields)
    ):
        return value
    raise ValueError(f"{value!r} is not a cron expression (five fields like '0 6 * * *', or '@daily')")


def _freshness(value: Any) -> Any:
    """Accept N hours (fail window) or Phlo's (warn_hours, fail_hours) pair."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (None, float(value))
    if isinstance(value, list | tuple) and len(value) == 2:
        return (float(value[0]) if value[0] is not None else None, float(value[1]))
    raise ValueError("must be hours (e.g. 24) or a (warn_hours, fail_hours) pair")


class RunSpec(_Spec):
    """How and when an asset runs: its function, retries, time limit, cron and freshness."""

    fn: Callable[..., Any]
    max_runtime_seconds: Annotated[int, Field(gt=0)] | None = None
    max_retries: Annotated[int, Field(ge=0)] | None = None
    retry_delay_seconds: Annotated[float, Field(ge=0)] | None = None
    cron: Annotated[str | None, AfterValidator(_check_cron)] = None
    freshness_hours: Annotated[float | tuple[float | None, float] | None, BeforeValidator(_freshness)] = None

    @field_validator("freshness_hours")
    @classmethod
    def _positive_window(
        cls, value: float | tuple[float | None, float] | None
    ) -> tuple[float | None, float] | None:
        if value is None:
            return None
        assert isinstance(value, tuple)  # normalized by _freshness
        warn, fail = value
        if fail <= 0 or (warn is not None and not 0 < warn <= fail):
            raise ValueError("hours must be > 0, and the warn window no longer than the fail window")
        return value

    @property
    def freshness_window(self) -> tuple[float | None, float] | None:
        """(warn_hours or None, fail_hours), or None without a freshness requirement."""
        value = self.freshness_hours
        return value if isinstance(value, tuple) else None


def _check_severity(value: Any) -> str:
    if value is None:
        return "ERROR"
    normalized = str(getattr(value, "value", value)).strip().upper()
    mapped = {"WARN": "WARN", "WARNING": "WARN", "INFO": "WARN", "ERROR": "ERROR", "CRITICAL": "ERROR"}
    if normalized not in mapped:
        raise ValueError(f"{value!r} is not a severity (use 'WARN' or 'ERROR')")
    return mapped[normalized]


def _optional_severity(value: Any) -> str | None:
    return None if value is None else _check_severity(value)


Severity = Annotated[Literal["WARN", "ERROR"], BeforeValidator(_check_severity)]


class AssetCheckSpec(_Spec):
    """A check on one asset: a function check (``fn``) or a declarative one reported by the asset's run."""

    name: Annotated[str, Field(pattern=_NAME_RE.pattern)]
    asset_key: AssetKeyStr
    fn: Callable[..., Any] | None = None
    blocking: bool = True
    description: str | None = None
    severity: Severity = "ERROR"
    tags: Tags = Field(default_factory=lambda: MappingProxyType({}))


class AssetSpec(_Spec):
    """An asset: key (``raw.orders`` is Dagster key raw/orders), metadata, partitions, deps, run, checks."""

    key: AssetKeyStr
    group: Annotated[str, Field(pattern=_NAME_RE.pattern)] | None = None
    description: str | None = None
    kinds: StrSet = frozenset()
    tags: Annotated[Tags, AfterValidator(_check_asset_tags)] = Field(
        default_factory=lambda: MappingProxyType({})
    )
    metadata: FrozenMap = Field(default_factory=lambda: MappingProxyType({}))
    partitions: PartitionSpec | None = None
    deps: Annotated[Sequence[AssetKeyStr], BeforeValidator(_as_tuple), AfterValidator(tuple)] = ()
    resources: StrSet = frozenset()
    run: RunSpec | None = None
    checks: Annotated[Sequence[AssetCheckSpec], BeforeValidator(_as_tuple), AfterValidator(tuple)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AssetSpec:
        if self.key in self.deps:
            raise ValueError(f"'deps' lists the asset itself ({self.key!r})")
        seen: set[str] = set()
        for check in self.checks:
            if check.asset_key != self.key:
                raise ValueError(
                    f"check {check.name!r} in 'checks' targets {check.asset_key!r}, not this asset"
                )
            if check.name in seen:
                raise ValueError(f"'checks' has two checks named {check.name!r}")
            seen.add(check.name)
        return self


class ResourceSpec(_Spec):
    """A named resource handed to runs that list it in ``AssetSpec.resources``."""

    name: Annotated[str, Field(pattern=_NAME_RE.pattern)]
    resource: Any


class MaterializeResult(_Spec):
    """What a run function reports for its asset; a status of failure/failed/error fails the step."""

    metadata: FrozenMap = Field(default_factory=lambda: MappingProxyType({}))
    status: str | None = None
    asset_key: AssetKeyStr | None = None


class CheckResult(_Spec):
    """Outcome of a check; name and asset default to the check being run."""

    passed: bool
    check_name: str | None = None
    asset_key: AssetKeyStr | None = None
    severity: Annotated[Literal["WARN", "ERROR"] | None, BeforeValidator(_optional_severity)] = None
    metadata: FrozenMap = Field(default_factory=lambda: MappingProxyType({}))
    description: str | None = None


_LOGGING_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})
# The attribute of a log record (logging's ``extra``) holding the keyword fields of a structured call.
LOG_FIELDS_ATTR = "phlo_fields"


def _render(value: Any) -> str:
    text = str(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


class StructuredLogger:
    """A logger taking structlog-style keyword fields, as Phlo's plugins log: ``info("loaded", rows=3)``.

    Fields are appended to the message as ``key=value`` and kept as a mapping on the log record
    (``record.phlo_fields``, via logging's ``extra``); logging's own keywords (exc_info, ...) pass through.
    Everything else is the wrapped logger's (Dagster's ``context.log``).
    """

    __slots__ = ("_bound", "_logger")

    def __init__(self, logger: Any, bound: Mapping[str, Any] | None = None) -> None:
        self._logger = logger
        self._bound: dict[str, Any] = dict(bound or {})

    @property
    def wrapped(self) -> Any:
        return self._logger

    def bind(self, **fields: Any) -> StructuredLogger:
        return StructuredLogger(self._logger, {**self._bound, **fields})

    def log(self, level: int | str, event: Any, *args: Any, **fields: Any) -> None:
        options = {k: fields.pop(k) for k in list(fields) if k in _LOGGING_KWARGS}
        fields = {**self._bound, **fields}
        message = str(event)
        if args:
            try:
                message = message % args
            except (TypeError, ValueError):
                message = " ".join([message, *map(str, args)])
        if fields:
            message = " ".join([message, *(f"{k}={_render(v)}" for k, v in fields.items())])
            options["extra"] = {**dict(options.get("extra") or {}), LOG_FIELDS_ATTR: fields}
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
            level = level if isinstance(level, int) else logging.INFO
        self._logger.log(level, message, **options)

    def debug(self, event: Any, *args: Any, **fields: Any) -> None:
        self.log(logging.DEBUG, event, *args, **fields)

    def info(self, event: Any, *args: Any, **fields: Any) -> None:
        self.log(logging.INFO, event, *args, **fields)

    def warning(self, event: Any, *args: Any, **fields: Any) -> None:
        self.log(logging.WARNING, event, *args, **fields)

    warn = warning

    def error(self, event: Any, *args: Any, **fields: Any) -> None:
        self.log(logging.ERROR, event, *args, **fields)

    def exception(self, event: Any, *args: Any, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self.log(logging.ERROR, event, *args, **fields)

    def critical(self, event: Any, *args: Any, **fields: Any) -> None:
        self.log(logging.CRITICAL, event, *args, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


@dataclass(frozen=True)
class Routing:
    """Where a run goes (Phlo's RuntimeRouting fields this runtime knows), used when phlo is not installed."""

    environment: str | None = None
    ref: str | None = None
    partition_key: str | None = None
    run_id: str | None = None
    resources: Mapping[str, Any] = MappingProxyType({})
    feature_flags: Mapping[str, str] = MappingProxyType({})
    capability_overrides: Mapping[str, str] = MappingProxyType({})


def capability_overrides_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``phlo/capability/<type>`` or ``capability/<type>`` run tags: provider overrides for this run."""
    found: dict[str, str] = {}
    for key, value in tags.items():
        for prefix in ("phlo/capability/", "capability/"):
            if key.startswith(prefix) and value and key[len(prefix) :].strip():
                found[key[len(prefix) :].strip()] = value
                break
    return found


class RuntimeContext:
    """What a run or check function sees: run id, partition, tags, logger, resources and routing."""

    __slots__ = (
        "_capability_overrides",
        "_resources",
        "asset_key",
        "logger",
        "partition_key",
        "raw",
        "run_id",
        "tags",
    )

    def __init__(
        self,
        *,
        run_id: str | None,
        partition_key: str | None,
        tags: Mapping[str, str],
        logger: Any,
        resources: Mapping[str, Any],
        asset_key: str | None = None,
        raw: Any = None,
        capability_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.partition_key = partition_key
        self.tags: Mapping[str, str] = MappingProxyType(dict(tags))
        # A stdlib logger (Dagster's context.log is one) rejects keyword fields: wrap it; keep anything else.
        self.logger = StructuredLogger(logger) if isinstance(logger, logging.Logger) else logger
        self._resources: Mapping[str, Any] = MappingProxyType(dict(resources))
        self.asset_key = asset_key
        self.raw = raw  # the orchestrator's own context, for what specs cannot express
        self._capability_overrides = dict(capability_overrides or {})

    @property
    def resources(self) -> Mapping[str, Any]:
        """Resources this run declared, by name."""
        return self._resources

    @property
    def capability_overrides(self) -> Mapping[str, str]:
        """Capability providers for this run: run tags first, then the asset spec's capability_overrides."""
        merged = capability_overrides_from_tags(self.tags)
        for capability, provider in self._capability_overrides.items():
            merged.setdefault(capability, provider)
        return MappingProxyType(merged)

    @property
    def routing(self) -> Any:
        """Phlo's ``RuntimeRouting`` when phlo is installed (its plugins read it), else :class:`Routing`."""
        overrides = dict(self.capability_overrides)
        if "phlo.capabilities.runtime" in sys.modules or _phlo_installed():
            try:
                from dataclasses import replace

                from phlo.capabilities.runtime import routing_from_context

                shim = _RoutingInputs(self.run_id, self.partition_key, dict(self.tags), dict(self.resources))
                return replace(routing_from_context(shim), capability_overrides=overrides)
            except ImportError:
                pass
        tags = self.tags
        return Routing(
            environment=tags.get("environment") or tags.get("env"),
            ref=next(
                (tags[k] for k in ("phlo/wap_branch", "phlo/ref", "ref", "branch") if tags.get(k)), None
            ),
            partition_key=self.partition_key,
            run_id=self.run_id,
            resources=self.resources,
            feature_flags=MappingProxyType(
                {k.removeprefix("feature/"): v for k, v in tags.items() if k.startswith("feature/")}
            ),
            capability_overrides=MappingProxyType(overrides),
        )

    def get_resource(self, name: str) -> Any:
        """The resource registered as ``name``; KeyError names what is available."""
        try:
            return self._resources[name]
        except KeyError:
            available = ", ".join(sorted(self._resources)) or "none"
            raise KeyError(
                f"resource {name!r} is not available to this run (declared: {available}); "
                "list it in AssetSpec.resources"
            ) from None


@dataclass(frozen=True)
class _RoutingInputs:
    run_id: str | None
    partition_key: str | None
    tags: dict[str, str]
    resources: dict[str, Any]


def _phlo_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("phlo") is not None
    except (ImportError, ValueError):
        return False
