"""The S3 operations the driver uses: one typed function each, building the HTTP request and the
parser of its answer (``S3Client.call(path, put_object(Key=...))``). Nothing here sends anything:
client.py does, signed, through storage/rest.py's client, retried.

Parameters and answers keep botocore's names (``Key``, ``UploadId``, ``ContentLength``...), so the
driver reads like code written against the S3 API reference; only the fields the driver reads are
parsed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape

import aiohttp

from fastreg.storage.s3.body import PartBody
from fastreg.storage.s3.signing import uri_encode

_NS = re.compile(r"^\{[^}]*\}")

#: (response, body) -> the answer's fields; the body is b"" for a streamed GetObject.
Parser = Callable[[aiohttp.ClientResponse, bytes], dict[str, Any]]


@dataclass(slots=True)
class Request:
    method: str
    key: str | None  # None: the bucket itself
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | PartBody | None = None
    stream: bool = False  # answer with the open body (GetObject)
    error_in_200: bool = False  # a 200 may carry <Error> (copies, completion)


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # botocore's ("head_object"): named in messages
    request: Request
    parse: Parser


# -- answers ----------------------------------------------------------------------------------


def xml(data: bytes) -> ET.Element:
    """An XML document with its namespace dropped from every tag."""
    root = ET.fromstring(data)
    for element in root.iter():
        element.tag = _NS.sub("", element.tag)
    return root


def text(element: ET.Element, tag: str, default: str = "") -> str:
    found = element.find(tag)
    return found.text or default if found is not None else default


def _none(_: aiohttp.ClientResponse, __: bytes) -> dict[str, Any]:
    return {}


def _etag(response: aiohttp.ClientResponse, _: bytes) -> dict[str, Any]:
    return {"ETag": response.headers.get("ETag", "")}


def _head(response: aiohttp.ClientResponse, _: bytes) -> dict[str, Any]:
    headers = response.headers
    modified = headers.get("Last-Modified")
    return {
        "ContentLength": int(headers.get("Content-Length", 0)),
        "LastModified": parsedate_to_datetime(modified) if modified else None,
        "ETag": headers.get("ETag", ""),
        "ContentRange": headers.get("Content-Range"),
        "Metadata": {
            k[11:].lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")
        },
    }


# -- headers of new objects ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectArgs:
    """What a new object gets (PutObject, CopyObject, CreateMultipartUpload)."""

    ContentType: str | None = None
    StorageClass: str | None = None
    ServerSideEncryption: str | None = None
    SSEKMSKeyId: str | None = None
    Metadata: Mapping[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        pairs = [
            ("Content-Type", self.ContentType),
            ("x-amz-storage-class", self.StorageClass),
            ("x-amz-server-side-encryption", self.ServerSideEncryption),
            ("x-amz-server-side-encryption-aws-kms-key-id", self.SSEKMSKeyId),
            *((f"x-amz-meta-{k}", v) for k, v in self.Metadata.items()),
        ]
        return {name: value for name, value in pairs if value is not None}


def _copy_source(source: Mapping[str, str]) -> str:
    return "/" + uri_encode(f"{source['Bucket']}/{source['Key']}", path=True)


def _part(number: int, upload_id: str) -> list[tuple[str, str]]:
    return [("partNumber", str(number)), ("uploadId", upload_id)]


# -- the operations -----------------------------------------------------------------------------


def head_object(*, Key: str) -> Operation:
    return Operation("head_object", Request("HEAD", Key), _head)


def get_object(*, Key: str, Range: str | None = None) -> Operation:
    headers = {"Range": Range} if Range else {}
    return Operation("get_object", Request("GET", Key, headers=headers, stream=True), _head)


def put_object(*, Key: str, Body: bytes | PartBody | None = None, **args: Any) -> Operation:
    return Operation(
        "put_object", Request("PUT", Key, headers=ObjectArgs(**args).headers(), body=Body), _etag
    )


def copy_object(
    *, Key: str, CopySource: Mapping[str, str], MetadataDirective: str | None = None, **args: Any
) -> Operation:
    headers = {**ObjectArgs(**args).headers(), "x-amz-copy-source": _copy_source(CopySource)}
    if MetadataDirective:
        headers["x-amz-metadata-directive"] = MetadataDirective
    return Operation("copy_object", Request("PUT", Key, headers=headers, error_in_200=True), _none)


def delete_object(*, Key: str) -> Operation:
    return Operation("delete_object", Request("DELETE", Key), _none)


def create_multipart_upload(*, Key: str, **args: Any) -> Operation:
    def parse(_: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        return {"UploadId": text(xml(body), "UploadId")}

    return Operation(
        "create_multipart_upload",
        Request("POST", Key, [("uploads", "")], ObjectArgs(**args).headers()),
        parse,
    )


def upload_part(*, Key: str, UploadId: str, PartNumber: int, Body: PartBody | bytes) -> Operation:
    return Operation(
        "upload_part", Request("PUT", Key, _part(PartNumber, UploadId), body=Body), _etag
    )


def upload_part_copy(
    *,
    Key: str,
    UploadId: str,
    PartNumber: int,
    CopySource: Mapping[str, str],
    CopySourceRange: str | None = None,
) -> Operation:
    headers = {"x-amz-copy-source": _copy_source(CopySource)}
    if CopySourceRange:
        headers["x-amz-copy-source-range"] = CopySourceRange

    def parse(_: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        return {"CopyPartResult": {"ETag": text(xml(body), "ETag")}}

    request = Request("PUT", Key, _part(PartNumber, UploadId), headers, error_in_200=True)
    return Operation("upload_part_copy", request, parse)


def complete_multipart_upload(
    *, Key: str, UploadId: str, MultipartUpload: Mapping[str, Sequence[Mapping[str, Any]]]
) -> Operation:
    parts = "".join(
        f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{escape(p['ETag'])}</ETag></Part>"
        for p in MultipartUpload["Parts"]
    )
    body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
    request = Request("POST", Key, [("uploadId", UploadId)], body=body, error_in_200=True)
    return Operation("complete_multipart_upload", request, _none)


def abort_multipart_upload(*, Key: str, UploadId: str) -> Operation:
    return Operation(
        "abort_multipart_upload", Request("DELETE", Key, [("uploadId", UploadId)]), _none
    )


def delete_objects(*, Delete: Mapping[str, Any]) -> Operation:
    objects = "".join(f"<Object><Key>{escape(o['Key'])}</Key></Object>" for o in Delete["Objects"])
    quiet = "<Quiet>true</Quiet>" if Delete.get("Quiet") else ""
    body = f"<Delete>{quiet}{objects}</Delete>".encode()
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()

    def parse(_: aiohttp.ClientResponse, answer: bytes) -> dict[str, Any]:
        errors = xml(answer).findall("Error")
        return {"Errors": [{"Key": text(e, "Key"), "Code": text(e, "Code")} for e in errors]}

    return Operation(
        "delete_objects", Request("POST", None, [("delete", "")], {"Content-MD5": md5}, body), parse
    )


def _query(**fields: object) -> list[tuple[str, str]]:
    """Query parameters named by S3 (``max-keys``), those without a value left out."""
    return [(k.replace("_", "-"), str(v)) for k, v in fields.items() if v not in (None, "")]


def list_objects_v2(
    *,
    Prefix: str = "",
    MaxKeys: int | None = None,
    Delimiter: str | None = None,
    ContinuationToken: str | None = None,
) -> Operation:
    query = [("list-type", "2")] + _query(
        prefix=Prefix, max_keys=MaxKeys, delimiter=Delimiter, continuation_token=ContinuationToken
    )

    def parse(_: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        root = xml(body)
        contents = [
            {
                "Key": text(c, "Key"),
                "Size": int(text(c, "Size", "0")),
                "LastModified": _iso_date(text(c, "LastModified")),
            }
            for c in root.findall("Contents")
        ]
        return {
            "Contents": contents,
            "CommonPrefixes": [
                {"Prefix": text(c, "Prefix")} for c in root.findall("CommonPrefixes")
            ],
            "IsTruncated": text(root, "IsTruncated") == "true",
            "NextContinuationToken": text(root, "NextContinuationToken") or None,
        }

    return Operation("list_objects_v2", Request("GET", None, query), parse)


def list_multipart_uploads(
    *, Prefix: str = "", KeyMarker: str | None = None, UploadIdMarker: str | None = None
) -> Operation:
    query = [("uploads", "")] + _query(
        prefix=Prefix, key_marker=KeyMarker, upload_id_marker=UploadIdMarker
    )

    def parse(_: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        root = xml(body)
        uploads = root.findall("Upload")
        return {
            "Uploads": [{"Key": text(u, "Key"), "UploadId": text(u, "UploadId")} for u in uploads],
            "IsTruncated": text(root, "IsTruncated") == "true",
            "NextKeyMarker": text(root, "NextKeyMarker"),
            "NextUploadIdMarker": text(root, "NextUploadIdMarker"),
        }

    return Operation("list_multipart_uploads", Request("GET", None, query), parse)


def _iso_date(value: str) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None
