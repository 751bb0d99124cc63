#!/usr/bin/env python3
"""Start moto's server with fixes tenantctl's tests and quickstart depend on.

Usage: python3 scripts/moto_server.py --host 127.0.0.1 --port PORT

moto 5.2.1 gives every RDS DB instance the same DbiResourceId
("db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U"). The Terraform AWS provider uses that value as
the aws_db_instance resource id, so with two instances a destroy of one tenant's
database can delete another tenant's. This launcher patches
moto.rds.models.DBInstance so each instance gets its own random id, in AWS's
format ("db-" + 26 upper-case letters/digits), then runs moto's own server
entry point in this process (the patch does not survive --reload, which is
therefore refused).

It also answers CompleteMultipartUpload with the root element AWS sends,
`CompleteMultipartUploadResult`: moto 5.2.1 names it
`CompleteMultipartUploadResponse`, which the AWS SDKs refuse to parse, so a
multipart upload (a large `tenantctl export` file) would fail after it completed.

It also fixes Route 53's re-creation of a record: moto 5.2.1 refuses to CREATE a record
it has seen created before (deleted since) whenever *any* record of the zone sorts after
it, not only the same name and type; Terraform repairing a deleted tenant record in a
shared zone then fails with "already exists". Such a CREATE is checked against the exact
name and type, and applied as an UPSERT when that record is absent.

And it implements CloudWatch Logs' AssociateKmsKey and DisassociateKmsKey, which moto
5.2.1 answers with HTTP 500: a tier move that gives a tenant its own key changes the key
of the tenant's existing log group, and the provider would retry the 500 for minutes and
fail the apply.
"""
import argparse
import secrets
import string
import sys

_ALPHABET = string.ascii_uppercase + string.digits


def _new_dbi_resource_id(taken):
    while True:
        candidate = "db-" + "".join(secrets.choice(_ALPHABET) for _ in range(26))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def patch_moto():
    from moto.rds import models

    cls = models.DBInstance
    if getattr(cls, "_tenantctl_unique_dbi_resource_id", False):
        return
    original_init = cls.__init__
    issued = set()

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.dbi_resource_id = _new_dbi_resource_id(issued)

    __init__.__wrapped__ = original_init
    cls.__init__ = __init__
    cls._tenantctl_unique_dbi_resource_id = True


def patch_s3_complete_multipart():
    from moto.s3 import responses

    cls = responses.S3Response
    if getattr(cls, "_tenantctl_complete_multipart_root", False):
        return
    original = cls._key_response_post

    def _key_response_post(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not (isinstance(result, tuple) and len(result) == 3):
            return result
        status, headers, body = result
        wrong, right = "CompleteMultipartUploadResponse", "CompleteMultipartUploadResult"
        if isinstance(body, bytes) and wrong.encode() in body:
            body = body.replace(wrong.encode(), right.encode())
        elif isinstance(body, str) and wrong in body:
            body = body.replace(wrong, right)
        return status, headers, body

    _key_response_post.__wrapped__ = original
    cls._key_response_post = _key_response_post
    cls._tenantctl_complete_multipart_root = True


def patch_logs_kms_key():
    from moto.logs import responses

    cls = responses.LogsResponse
    if getattr(cls, "_tenantctl_logs_kms_key", False):
        return

    def _group(self):
        name = self._get_param("logGroupName")
        groups = self.logs_backend.groups
        if name not in groups:
            from moto.logs.exceptions import ResourceNotFoundException

            raise ResourceNotFoundException()
        return groups[name]

    def associate_kms_key(self):
        _group(self).kms_key_id = self._get_param("kmsKeyId")
        return ""

    def disassociate_kms_key(self):
        _group(self).kms_key_id = None
        return ""

    cls.associate_kms_key = associate_kms_key
    cls.disassociate_kms_key = disassociate_kms_key
    cls._tenantctl_logs_kms_key = True


def patch_route53_recreate():
    from moto.route53 import models
    from moto.route53.exceptions import ResourceRecordAlreadyExists

    cls = models.Route53Backend
    if getattr(cls, "_tenantctl_route53_recreate", False):
        return
    original = cls.change_resource_record_sets

    def norm(name):
        return name.rstrip(".").lower()

    def change_resource_record_sets(self, zoneid, change_list):
        zone = self.get_hosted_zone(zoneid)
        for value in change_list:
            if value["Action"] != "CREATE" or value not in zone.rr_changes:
                continue
            rrset = value["ResourceRecordSet"]
            exists = any(
                norm(r.name) == norm(rrset["Name"]) and r.type == rrset["Type"]
                for r in zone.rrsets
            )
            if exists:
                raise ResourceRecordAlreadyExists(name=rrset["Name"] + ".", _type=rrset["Type"])
            value["Action"] = "UPSERT"
        return original(self, zoneid, change_list)

    change_resource_record_sets.__wrapped__ = original
    cls.change_resource_record_sets = change_resource_record_sets
    cls._tenantctl_route53_recreate = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args, rest = parser.parse_known_args(argv)
    if any(a in ("-r", "--reload") for a in rest):
        parser.error("--reload is not supported: the reloader would drop the RDS patch")
    patch_moto()
    patch_s3_complete_multipart()
    patch_logs_kms_key()
    patch_route53_recreate()
    from moto import server

    sys.stdout.write(f"moto_server (tenantctl launcher) on http://{args.host}:{args.port}\n")
    sys.stdout.flush()
    server.main(["--host", args.host, "--port", str(args.port), *rest])


if __name__ == "__main__":
    main()
