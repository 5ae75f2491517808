"""fastreg's S3 signatures against botocore's signers, given the same request and instant.

botocore is the reference implementation of both specifications; the driver no longer signs
with it (storage/s3/signing.py), so every shape of request the driver sends is checked here:
object and bucket paths, sub-resource queries, characters a key may hold, session tokens.
"""

from __future__ import annotations

import datetime
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from fastreg.storage.s3.signing import (
    EMPTY_SHA256,
    Credentials,
    SigV2,
    SigV4,
    canonical_query,
    uri_encode,
)

NOW = datetime.datetime(2026, 11, 28, 4, 5, 6, tzinfo=datetime.UTC)
CASES = [
    ("GET", "/bucket", [("list-type", "2"), ("prefix", "docker/registry/v2/"), ("max-keys", "1000")], {}),
    ("HEAD", "/bucket/docker/registry/v2/repositories/a:b@c+d=e/_layers/sha256/x/link", [], {}),
    ("PUT", "/bucket/up/data~/00000000000014680064", [("partNumber", "3"), ("uploadId", "a/b+c==")],
     {"Content-Type": "application/octet-stream"}),
    ("POST", "/bucket", [("delete", "")], {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
    ("PUT", "/bucket/blobs/x", [],
     {"x-amz-copy-source": "/bucket/up/data", "x-amz-metadata-directive": "REPLACE",
      "x-amz-meta-fastreg-segments": "1", "x-amz-storage-class": "STANDARD"}),
    ("GET", "/bucket", [("uploads", ""), ("prefix", "p/"), ("key-marker", "k m")], {}),
]  # fmt: skip


@pytest.mark.parametrize("token", [None, "session/token+="])
@pytest.mark.parametrize(("method", "path", "query", "extra"), CASES)
def test_sigv4_matches_botocore(
    method: str, path: str, query: list[tuple[str, str]], extra: dict[str, str], token: str | None
) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    encoded = uri_encode(path, path=True)
    headers = {"host": "127.0.0.1:8333", **extra}
    SigV4("eu-west-3").sign(method, encoded, query, headers, EMPTY_SHA256, creds, NOW)

    url = f"http://127.0.0.1:8333{encoded}" + (f"?{canonical_query(query)}" if query else "")
    request = AWSRequest(
        method=method, url=url, headers={k: v for k, v in headers.items() if k != "Authorization"}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = S3SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, token), "s3", "eu-west-3"
    )
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    assert headers["Authorization"].endswith(f"Signature={expected}")
    assert headers["x-amz-date"] == "20261128T040506Z"
    assert ("x-amz-security-token" in headers) == bool(token)


@pytest.mark.parametrize("token", [None, "tok"])
@pytest.mark.parametrize(("method", "path", "query", "extra"), CASES)
def test_sigv2_matches_botocore(
    method: str, path: str, query: list[tuple[str, str]], extra: dict[str, str], token: str | None
) -> None:
    creds = Credentials("AKIDEXAMPLE", "secret", token)
    encoded = uri_encode(path, path=True)
    headers = dict(extra)
    SigV2().sign(method, encoded, query, headers, creds, NOW)

    # as botocore writes a sub-resource without a value: "?delete", not "?delete="
    url = f"http://127.0.0.1:8333{encoded}" + (
        "?" + "&".join(f"{k}={v}" if v else k for k, v in query) if query else ""
    )
    auth = HmacV1Auth(BotoCredentials(creds.access_key, creds.secret_key, token))
    auth._get_date = lambda: headers["Date"]  # type: ignore[method-assign]  # its clock: ours
    plain = {k: v for k, v in headers.items() if k != "Authorization"}
    boto_headers = AWSRequest(method=method, url=url, headers=plain).headers
    expected = auth.get_signature(method, urlsplit(url), boto_headers, auth_path=encoded)
    assert headers["Authorization"] == f"AWS AKIDEXAMPLE:{expected}"


def test_presigned_query_is_signed_over_host_only() -> None:
    creds = Credentials("AK", "SK", "tok")
    query = dict(SigV4("us-east-1").presign("GET", "b.example", "/k", creds, 90, NOW))
    assert query["X-Amz-Expires"] == "90" and query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Credential"] == "AK/20261128/us-east-1/s3/aws4_request"
    assert query["X-Amz-Security-Token"] == "tok" and len(query["X-Amz-Signature"]) == 64
    v2 = dict(SigV2().presign("GET", "/b/k", creds, 90, NOW))
    assert int(v2["Expires"]) == int(NOW.timestamp()) + 90 and v2["AWSAccessKeyId"] == "AK"
