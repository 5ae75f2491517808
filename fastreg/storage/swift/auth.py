"""Swift authentication: TempAuth/v1, Keystone v2 and v3, as ncw/swift (Distribution's client) does.

Each version is a request (`v1_request`, `v2_request`, `v3_request`: method, URL, headers, JSON
body) and a reading of the answer (`read_v1`, `read_v2`, `read_v3`) into the storage URL and the
token. Both halves are plain functions, so their shape is tested without a Keystone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastreg.storage.base import StorageError
from fastreg.storage.swift.params import SwiftParams


class AuthError(StorageError):
    """Authentication failed or its answer is unusable."""


@dataclass(frozen=True, slots=True)
class AuthRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    storage_url: str
    token: str


def auth_request(p: SwiftParams) -> AuthRequest:
    if p.authversion == 3:
        return v3_request(p)
    if p.authversion == 2:
        return v2_request(p)
    return v1_request(p)


def read_answer(p: SwiftParams, status: int, headers: Mapping[str, str], body: Any) -> Credentials:
    """Credentials from an authentication answer (``body`` is the decoded JSON, or None)."""
    if status in (401, 403):
        raise AuthError(
            f"swift authentication at {p.authurl} refused ({status}): check "
            "username, password and tenant/domain"
        )
    if status >= 300:
        raise AuthError(f"swift authentication at {p.authurl} failed with HTTP {status}")
    if p.authversion == 3:
        return read_v3(p, headers, body)
    if p.authversion == 2:
        return read_v2(p, body)
    return read_v1(p, headers)


# -- v1 (TempAuth, Swauth, Rackspace) -----------------------------------------------------------


def v1_request(p: SwiftParams) -> AuthRequest:
    return AuthRequest("GET", p.authurl, {"X-Auth-User": p.username, "X-Auth-Key": p.password})


def read_v1(p: SwiftParams, headers: Mapping[str, str]) -> Credentials:
    url, token = headers.get("X-Storage-Url"), headers.get("X-Auth-Token")
    if not url or not token:
        raise AuthError(f"swift v1 authentication at {p.authurl}: no X-Storage-Url/X-Auth-Token")
    return Credentials(url.rstrip("/"), token)


# -- Keystone v2 ---------------------------------------------------------------------------------


def v2_request(p: SwiftParams) -> AuthRequest:
    auth: dict[str, Any] = {"passwordCredentials": {"username": p.username, "password": p.password}}
    if p.tenant:
        auth["tenantName"] = p.tenant
    if p.tenantid:
        auth["tenantId"] = p.tenantid
    return AuthRequest("POST", _join(p.authurl, "tokens"), _JSON, {"auth": auth})


def read_v2(p: SwiftParams, body: Any) -> Credentials:
    try:
        access = body["access"]
        token = str(access["token"]["id"])
        catalog = access.get("serviceCatalog") or []
    except (KeyError, TypeError) as exc:
        raise AuthError(f"swift v2 authentication at {p.authurl}: unexpected answer") from exc
    key = f"{p.endpointtype}URL"
    for service in catalog:
        if service.get("type") != "object-store":
            continue
        for endpoint in service.get("endpoints") or []:
            if (not p.region or endpoint.get("region") == p.region) and endpoint.get(key):
                return Credentials(str(endpoint[key]).rstrip("/"), token)
    raise AuthError(_no_endpoint(p))


# -- Keystone v3 ---------------------------------------------------------------------------------


def v3_request(p: SwiftParams) -> AuthRequest:
    user: dict[str, Any] = {"name": p.username, "password": p.password}
    if p.domain:
        user["domain"] = {"name": p.domain}
    elif p.domainid:
        user["domain"] = {"id": p.domainid}
    auth: dict[str, Any] = {
        "identity": {"methods": ["password"], "password": {"user": user}},
    }
    if p.trustid:
        auth["scope"] = {"OS-TRUST:trust": {"id": p.trustid}}
    elif p.tenantid:
        auth["scope"] = {"project": {"id": p.tenantid}}
    elif p.tenant:
        if p.tenantdomain:
            domain = {"name": p.tenantdomain}
        elif p.tenantdomainid:
            domain = {"id": p.tenantdomainid}
        elif p.domain:
            domain = {"name": p.domain}
        elif p.domainid:
            domain = {"id": p.domainid}
        else:
            domain = {"name": "Default"}
        auth["scope"] = {"project": {"name": p.tenant, "domain": domain}}
    return AuthRequest("POST", _join(p.authurl, "auth/tokens"), _JSON, {"auth": auth})


def read_v3(p: SwiftParams, headers: Mapping[str, str], body: Any) -> Credentials:
    token = headers.get("X-Subject-Token")
    try:
        catalog = body["token"].get("catalog") or []
    except (KeyError, TypeError, AttributeError) as exc:
        raise AuthError(f"swift v3 authentication at {p.authurl}: unexpected answer") from exc
    if not token:
        raise AuthError(f"swift v3 authentication at {p.authurl}: no X-Subject-Token")
    for service in catalog:
        if service.get("type") != "object-store":
            continue
        for endpoint in service.get("endpoints") or []:
            if endpoint.get("interface") != p.endpointtype or not endpoint.get("url"):
                continue
            if p.region and p.region not in (endpoint.get("region_id"), endpoint.get("region")):
                continue
            return Credentials(str(endpoint["url"]).rstrip("/"), token)
    raise AuthError(_no_endpoint(p))


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def _join(base: str, tail: str) -> str:
    return base.rstrip("/") + "/" + tail


def _no_endpoint(p: SwiftParams) -> str:
    where = f" in region {p.region!r}" if p.region else ""
    return (
        f"swift authentication at {p.authurl}: no {p.endpointtype} object-store endpoint"
        f"{where} in the service catalog"
    )
