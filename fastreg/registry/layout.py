"""The storage layout of CNCF Distribution 2.8/3.x, in one place (cf. its `storage/paths.go`).

Root `/docker/registry/v2`:
  blobs/<alg>/<hh>/<hex>/data                                   content, never overwritten
  repositories/<name>/_layers/<alg>/<hex>/link                  blob linked into the repo
  repositories/<name>/_manifests/revisions/<alg>/<hex>/link     manifest in the repo
  repositories/<name>/_manifests/tags/<tag>/current/link        tag -> digest
  repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link   every digest the tag had
  repositories/<name>/_uploads/<uuid>/data, startedat           upload sessions
fastreg adds one directory Distribution ignores (its walkers only look at the names above):
  repositories/<name>/_manifests/referrers/<alg>/<subject-hex>/<alg>/<hex>/link
A link file holds exactly "<alg>:<hex>" with no newline. The names and digests passed in here
are already validated (`names.py`, `digests.py`), so no segment can escape the root.
"""

from __future__ import annotations

from fastreg.registry.digests import Digest

ROOT = "/docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def _link(directory: str, d: Digest) -> str:
    """The link file naming ``d`` below ``directory`` (``<alg>/<hex>/link``)."""
    return f"{directory}/{d.algorithm}/{d.hex}/link"


def layers(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer_link(name: str, d: Digest) -> str:
    return _link(layers(name), d)


def manifests(name: str) -> str:
    return f"{repository(name)}/_manifests"


def revisions(name: str, algorithm: str) -> str:
    return f"{manifests(name)}/revisions/{algorithm}"


def revision_dir(name: str, d: Digest) -> str:
    return f"{revisions(name, d.algorithm)}/{d.hex}"


def revision_link(name: str, d: Digest) -> str:
    return _link(f"{manifests(name)}/revisions", d)


def tags(name: str) -> str:
    return f"{manifests(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return _link(f"{tag_dir(name, tag)}/index", d)


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{manifests(name)}/referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, d: Digest) -> str:
    return _link(referrers_dir(name, subject), d)


def uploads(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_startedat(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def upload_authgrant(name: str, upload_id: str) -> str:
    """fastreg only: who opened the upload, for `auth.token.uploadgrace` (removed with the dir)."""
    return f"{upload_dir(name, upload_id)}/authgrant"


def link_content(d: Digest) -> bytes:
    return str(d).encode()
