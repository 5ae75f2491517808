"""`middleware` and `validation` settings: what loading accepts, what it refuses, and the URLs and
rules they give (fastreg.registry.redirects, fastreg.registry.validation)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from fastreg.config import ConfigError, parse_config
from fastreg.registry.redirects import BaseURLRedirect, CloudFrontRedirect
from fastreg.storage.inmemory import InMemoryDriver

BLOB = "/docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data"


def config(**sections: object) -> str:
    doc = {"version": "0.1", "storage": {"inmemory": {}}, **sections}
    return yaml.safe_dump(doc)


def storage_middleware(*entries: dict[str, object]) -> dict[str, object]:
    return {"storage": list(entries)}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(tmp_path: Path, key: object, fmt: serialization.PrivateFormat) -> str:
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    path = tmp_path / "cloudfront.pem"
    path.write_bytes(pem)
    return str(path)


def cloudfront_entry(keyfile: str, **options: object) -> dict[str, object]:
    return {
        "name": "cloudfront",
        "options": {"baseurl": "cdn.example.net", "privatekey": keyfile, "keypairid": "K2JCJMDEHXQW5F",
                    **options},
    }


# --- redirect ------------------------------------------------------------------------------------


def test_redirect_sends_pulls_to_baseurl_with_the_storage_path() -> None:
    loaded = parse_config(config(middleware=storage_middleware(
        {"name": "redirect", "options": {"baseurl": "https://cdn.example:8443/"}}
    )))
    assert isinstance(loaded.redirector, BaseURLRedirect)
    assert loaded.redirector.url(InMemoryDriver(), BLOB) == "https://cdn.example:8443" + BLOB


def test_redirect_keeps_a_path_in_baseurl_in_front_as_distribution_3() -> None:
    loaded = parse_config(config(middleware=storage_middleware(
        {"name": "redirect", "options": {"baseurl": "http://cdn.example/mirror/"}}
    )))
    assert loaded.redirector is not None
    assert loaded.redirector.url(InMemoryDriver(), BLOB) == "http://cdn.example/mirror" + BLOB


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "middleware.storage[0].options.baseurl: required"),
        ({"baseurl": "cdn.example/x"}, "no scheme specified for redirect baseurl"),
        ({"baseurl": "https:///x"}, "no host specified for redirect baseurl"),
    ],
)
def test_redirect_without_a_usable_baseurl_stops_the_start(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(config(middleware=storage_middleware({"name": "redirect", "options": options})))


def test_the_last_enabled_storage_middleware_decides(tmp_path: Path) -> None:
    loaded = parse_config(config(middleware=storage_middleware(
        {"name": "redirect", "options": {"baseurl": "https://first/"}},
        {"name": "redirect", "options": {"baseurl": "https://second/"}},
        {"name": "redirect", "disabled": True, "options": {"baseurl": "https://third/"}},
    )))
    assert loaded.redirector is not None
    assert loaded.redirector.url(InMemoryDriver(), BLOB).startswith("https://second/")


def test_no_middleware_keeps_the_drivers_own_urls() -> None:
    assert parse_config(config()).redirector is None


# --- unknown names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (storage_middleware({"name": "nosuch"}),
         "middleware.storage[0].name: no storage middleware registered with name: 'nosuch'"),
        (storage_middleware({"name": "nosuch", "disabled": True}),
         "no storage middleware registered with name: 'nosuch'"),
        ({"registry": [{"name": "nosuch"}]},
         "middleware.registry[0]: no registry middleware registered with name: 'nosuch'"),
        ({"repository": [{"name": "nosuch", "options": {"a": 1}}]},
         "middleware.repository[0]: no repository middleware registered with name: 'nosuch'"),
    ],
)
def test_an_unknown_middleware_name_stops_the_start(section: object, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config(middleware=section))
    assert expected in str(raised.value)


# --- cloudfront ------------------------------------------------------------------------------------


def verify(url: str, key: rsa.RSAPrivateKey, keypairid: str) -> int:
    """Check a canned-policy signed URL as CloudFront does; its expiry."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    assert query["Key-Pair-Id"] == keypairid
    resource = url.split("?", 1)[0]
    expires = int(query["Expires"])
    policy = json.dumps(
        {"Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
        separators=(",", ":"),
    ).encode()
    signature = query["Signature"]
    assert not set(signature) & set("+=/"), "CloudFront's characters, not base64's"
    raw = base64.b64decode(signature.translate(str.maketrans("-_~", "+=/")))
    key.public_key().verify(raw, policy, padding.PKCS1v15(), hashes.SHA1())  # raises if wrong
    return expires


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8]
)
def test_cloudfront_url_is_signed_with_the_key_and_expires_after_duration(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    keyfile = write_key(tmp_path, rsa_key, fmt)
    loaded = parse_config(config(middleware=storage_middleware(
        cloudfront_entry(keyfile, duration="90s")
    )))
    signer = loaded.redirector
    assert isinstance(signer, CloudFrontRedirect)
    assert signer.baseurl == "https://cdn.example.net/"  # Distribution's defaults: https, a slash
    fixed = CloudFrontRedirect(signer.baseurl, signer.keypairid, signer.duration, signer.sign,
                               clock=lambda: 1_700_000_000.7)
    url = fixed.url(InMemoryDriver(), BLOB)
    assert url.startswith("https://cdn.example.net/" + BLOB.lstrip("/") + "?Expires=")
    assert verify(url, rsa_key, "K2JCJMDEHXQW5F") == 1_700_000_000 + 90


def test_cloudfront_signature_fails_for_another_resource(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    keyfile = write_key(tmp_path, rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    loaded = parse_config(config(middleware=storage_middleware(cloudfront_entry(keyfile))))
    assert loaded.redirector is not None
    url = loaded.redirector.url(InMemoryDriver(), BLOB)
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        verify(url.replace("/data?", "/other?"), rsa_key, "K2JCJMDEHXQW5F")


def test_cloudfront_default_duration_is_twenty_minutes(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    keyfile = write_key(tmp_path, rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    signer = parse_config(config(middleware=storage_middleware(cloudfront_entry(keyfile)))).redirector
    assert isinstance(signer, CloudFrontRedirect)
    assert signer.duration == 20 * 60


def test_cloudfront_signs_the_s3_key_with_its_root_prefix(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    from fastreg.storage.s3.driver import S3Driver
    from fastreg.storage.s3.params import S3Params

    keyfile = write_key(tmp_path, rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    signer = parse_config(config(middleware=storage_middleware(cloudfront_entry(keyfile)))).redirector
    assert signer is not None
    params = S3Params.parse({"bucket": "b", "region": "us-east-1", "rootdirectory": "/reg/root",
                             "accesskey": "a", "secretkey": "s"})
    url = signer.url(S3Driver(params), BLOB)
    assert url.startswith("https://cdn.example.net/reg/root" + BLOB + "?")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ipfilteredby": "aws"}, "'aws' is not supported by fastreg"),
        ({"ipfilteredby": "awsregion", "awsregion": "us-east-1"}, "'awsregion' is not supported"),
        ({"ipfilteredby": "everyone"}, "expected one of none, aws, awsregion"),
        ({"duration": "soon"}, "middleware.storage[0].options.duration"),
        ({"keypairid": None}, "middleware.storage[0].options.keypairid: required"),
        ({"privatekey": "/nonexistent/key.pem"}, "cannot read /nonexistent/key.pem"),
    ],
)
def test_cloudfront_options_that_stop_the_start(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, options: dict[str, object], message: str
) -> None:
    keyfile = write_key(tmp_path, rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    entry = cloudfront_entry(keyfile)
    entry["options"] = {**entry["options"], **options}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(config(middleware=storage_middleware(entry)))


def test_cloudfront_ipfilteredby_none_is_accepted(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    keyfile = write_key(tmp_path, rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    entry = cloudfront_entry(keyfile, ipfilteredby="none", updatefrequency="12h")
    assert parse_config(config(middleware=storage_middleware(entry))).redirector is not None


def test_cloudfront_refuses_a_key_that_is_not_rsa(tmp_path: Path) -> None:
    keyfile = write_key(tmp_path, ec.generate_private_key(ec.SECP256R1()),
                        serialization.PrivateFormat.PKCS8)
    with pytest.raises(ConfigError, match="is not an RSA key"):
        parse_config(config(middleware=storage_middleware(cloudfront_entry(keyfile))))


def test_cloudfront_refuses_a_file_that_is_no_pem_key(tmp_path: Path) -> None:
    keyfile = tmp_path / "junk.pem"
    keyfile.write_text("not a key\n")
    with pytest.raises(ConfigError, match="is not a PEM private key"):
        parse_config(config(middleware=storage_middleware(cloudfront_entry(str(keyfile)))))


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "accepted"),
    [
        # Distribution 2.8's answers, from tests/integration/test_validation.py's docker-registry
        (None, []),
        ({"disabled": True}, ["https://a.example/l", "https://good.example/x", "https://good.example/bad"]),
        ({"enabled": True, "disabled": True}, []),
        ({"manifests": {"urls": {"allow": [r"^https://good\.example/"], "deny": ["bad"]}}},
         ["https://good.example/x"]),
        ({"manifests": {"urls": {"deny": ["bad"]}}}, ["https://a.example/l", "https://good.example/x"]),
        ({"manifests": {"urls": {"allow": ["a\\.example", "good"]}}},
         ["https://a.example/l", "https://good.example/x", "https://good.example/bad"]),
    ],
)
def test_validation_rules(section: object, accepted: list[str]) -> None:
    rules = parse_config(config(validation=section) if section else config()).validation
    urls = ["https://a.example/l", "https://good.example/x", "https://good.example/bad"]
    assert [u for u in urls if rules.refusal(u) is None] == accepted


def test_validation_expression_that_does_not_compile_stops_the_start() -> None:
    with pytest.raises(ConfigError, match=r"validation\.manifests\.urls\.deny\[1\]: invalid expression"):
        parse_config(config(validation={"manifests": {"urls": {"deny": ["ok", "(unclosed"]}}}))


def test_validation_from_the_environment() -> None:
    rules = parse_config(config(), {"REGISTRY_VALIDATION_MANIFESTS_URLS_ALLOW": "['^https://ok/']"}).validation
    assert rules.refusal("https://ok/x") is None
    assert rules.refusal("https://other/x") is not None


def test_validation_and_middleware_no_longer_warn() -> None:
    loaded = parse_config(config(validation={"disabled": True}, middleware={"storage": []}))
    assert not [w for w in loaded.warnings if "validation" in w or "middleware" in w]
