"""API keys, roles and grants for online feature serving.

``conf/serving.yaml`` maps API keys to roles; a role lists the feature views it may read and
the PII features it is explicitly granted (a feature declared ``pii: true`` is refused unless
granted, even when its view is allowed). Keys are given through ``${ENV_VAR}`` so that secrets
stay out of the repository; each key has an ``id`` that logs and the audit trail name instead of
the secret.

Example:
    >>> authorizer = Authorizer(access, views)
    >>> principal = authorizer.authenticate(request.headers.get("X-API-Key"))
    >>> authorizer.authorize(principal.role, {"customer_rfm": ["recency_days"]})
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from featurelake.core.errors import UserError
from featurelake.feature_store.definitions import FeatureView, parse_feature_ref

__all__ = [
    "AccessConfig",
    "ApiKeyConfig",
    "AuthenticationError",
    "AuthorizationError",
    "Authorizer",
    "Principal",
    "RoleConfig",
]

ALL_VIEWS = "*"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleConfig(_Frozen):
    """What a role may read.

    Args:
        views: view names the role may read (``"*"``: every view).
        pii_grants: PII features the role may read, as ``"view:feature"`` or ``"view:*"``.
        health_details: the role may read ``GET /health/details`` (the online store's type and
            location, its password hidden).
        dashboard: the role may read ``GET /dashboard`` (the monitoring dashboard).
        description: who the role is for.
    """

    views: tuple[str, ...] = ()
    pii_grants: tuple[str, ...] = ()
    health_details: bool = False
    dashboard: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _grants_are_refs(self) -> RoleConfig:
        for grant in self.pii_grants:
            parse_feature_ref(grant)  # raises a ValueError naming the bad grant
        return self


class ApiKeyConfig(_Frozen):
    """One API key.

    Args:
        id: a public name for the key (logged and audited instead of the secret).
        key: the secret; at least 16 characters.
        role: the role the key acts as.
    """

    id: str = Field(min_length=1)
    key: SecretStr
    role: str

    @model_validator(mode="after")
    def _long_enough(self) -> ApiKeyConfig:
        if len(self.key.get_secret_value()) < 16:
            raise ValueError(f"API key {self.id!r} is shorter than 16 characters")
        return self


class AccessConfig(_Frozen):
    """Roles and the API keys that act as them."""

    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    api_keys: tuple[ApiKeyConfig, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AccessConfig:
        ids = [k.id for k in self.api_keys]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"API key ids repeat: {repeated}")
        secrets = [k.key.get_secret_value() for k in self.api_keys]
        if len(set(secrets)) != len(secrets):
            raise ValueError("two API keys have the same secret")
        for key in self.api_keys:
            if key.role not in self.roles:
                raise ValueError(
                    f"API key {key.id!r} has unknown role {key.role!r}; roles: {sorted(self.roles)}"
                )
        return self


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id (never the secret) and its role."""

    key_id: str
    role: str


class AuthenticationError(UserError):
    """No API key, or one that is not configured (HTTP 401)."""


class AuthorizationError(UserError):
    """The role may not read a requested view or PII feature (HTTP 403)."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class Authorizer:
    """Checks API keys and what their roles may read.

    Args:
        access: the roles and keys.
        views: the declared feature views (grants are checked against them).

    Raises:
        ValueError: a role names an undeclared view, or a PII grant names an undeclared view or
            feature, or a feature that is not PII (a grant that does nothing is a mistake).
    """

    def __init__(self, access: AccessConfig, views: Mapping[str, FeatureView]) -> None:
        self.views = dict(views)
        self.roles = dict(access.roles)
        # Keys are looked up by their SHA-256 digest; the secrets themselves are not kept.
        self._by_digest = {
            _digest(k.key.get_secret_value()): Principal(k.id, k.role) for k in access.api_keys
        }
        self._pii_grants: dict[str, set[tuple[str, str]]] = {}
        for name, role in self.roles.items():
            unknown = [v for v in role.views if v != ALL_VIEWS and v not in self.views]
            if unknown:
                raise ValueError(
                    f"role {name!r} lists undeclared view(s) {unknown}; "
                    f"declared: {sorted(self.views)}"
                )
            grants: set[tuple[str, str]] = set()
            for text in role.pii_grants:
                ref = parse_feature_ref(text)
                view = self.views.get(ref.view)
                if view is None:
                    raise ValueError(f"role {name!r}: PII grant {text!r} names an undeclared view")
                names = (
                    [f.name for f in view.features if f.pii]
                    if ref.feature == "*"
                    else [view.feature(ref.feature).name]
                )
                for feature in names:
                    if not view.feature(feature).pii:
                        raise ValueError(
                            f"role {name!r}: PII grant {text!r} names a feature that is not PII"
                        )
                    grants.add((view.name, feature))
            self._pii_grants[name] = grants

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of an API key.

        Raises:
            AuthenticationError: no key, or an unknown key.
        """
        if not presented:
            raise AuthenticationError("missing API key")
        digest = _digest(presented)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthenticationError("unknown API key")

    def authorize(self, role: str, requested: Mapping[str, Sequence[str]]) -> None:
        """Check that ``role`` may read every requested feature.

        Args:
            role: the role name.
            requested: ``{view name: [feature names]}``.

        Raises:
            AuthorizationError: an unknown role, a view the role may not read, or a PII feature
                without a grant; the message lists every refusal.
        """
        config = self.roles.get(role)
        if config is None:
            raise AuthorizationError(f"unknown role {role!r}")
        everything = ALL_VIEWS in config.views
        forbidden_views = [v for v in requested if not everything and v not in config.views]
        if forbidden_views:
            raise AuthorizationError(f"role {role!r} may not read view(s) {forbidden_views}")
        grants = self._pii_grants.get(role, set())
        ungranted = [
            f"{v}:{f}"
            for v, names in requested.items()
            for f in names
            if self.views[v].feature(f).pii and (v, f) not in grants
        ]
        if ungranted:
            raise AuthorizationError(f"role {role!r} has no grant for PII feature(s) {ungranted}")

    def authorize_health_details(self, role: str) -> None:
        """Check that ``role`` may read the health details (where the online store is).

        Raises:
            AuthorizationError: an unknown role, or one without ``health_details: true``.
        """
        config = self.roles.get(role)
        if config is None or not config.health_details:
            raise AuthorizationError(
                f"role {role!r} may not read the health details (needs health_details: true)"
            )

    def authorize_dashboard(self, role: str) -> None:
        """Check that ``role`` may read the monitoring dashboard.

        Raises:
            AuthorizationError: an unknown role, or one without ``dashboard: true``.
        """
        config = self.roles.get(role)
        if config is None or not config.dashboard:
            raise AuthorizationError(
                f"role {role!r} may not read the dashboard (needs dashboard: true)"
            )

    def readable_views(self, role: str) -> list[str]:
        """The views ``role`` may read."""
        config = self.roles.get(role)
        if config is None:
            return []
        if ALL_VIEWS in config.views:
            return sorted(self.views)
        return sorted(config.views)
