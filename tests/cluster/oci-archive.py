#!/usr/bin/env python3
"""Writes a one-layer OCI image archive holding one static program.

    oci-archive.py PROGRAM PATH_IN_IMAGE IMAGE_NAME OUTPUT.tar

The image runs PATH_IN_IMAGE as its entrypoint, as user 65535. `ctr images
import` takes the archive and names the image after the
`io.containerd.image.name` annotation of index.json. Used by node.sh for the
pod sandbox ("pause") image, so that the real node needs neither a registry
nor a Docker engine for it.
"""

import hashlib
import io
import json
import sys
import tarfile


def blob(out: tarfile.TarFile, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def main() -> None:
    program, path, name, output = sys.argv[1:5]
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = t.gettarinfo(program, arcname=path.lstrip("/"))
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        info.mtime = 0
        with open(program, "rb") as f:
            t.addfile(info, f)
    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [path], "User": "65535:65535"},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()],
        },
    }
    with tarfile.open(output, "w") as out:
        layer_desc = blob(out, layer_bytes)
        config_desc = blob(out, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = blob(out, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **manifest_desc,
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        for file_name, content in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index).encode()),
        ):
            info = tarfile.TarInfo(file_name)
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))


if __name__ == "__main__":
    main()
