# One S3 operation on one bucket through boto3, for the tests' view of an S3 server that does not
# go through backup_ext's own code. Run by inspect.rs as `python3 -c <this> OP ARGS...`; the
# endpoint, bucket and keys come from the environment (keys never in argv).
#
#   objects PREFIX          -> JSON [[key, size], ...]
#   uploads                 -> JSON [[key, upload id], ...] of open multipart uploads
#   get KEY                 -> the object's bytes
#   put KEY [METADATA_JSON] <- the object's bytes on stdin
#   delete KEY
#   head KEY                -> JSON {name: value} of the object's user metadata
#   create-upload KEY       -> the id of a new multipart upload, left open
#
# An S3 error exits 3 with its code (e.g. SignatureDoesNotMatch, NoSuchKey) alone on stderr; a
# client-side error (e.g. EndpointConnectionError) exits 3 with its class name.
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

env = os.environ
s3 = boto3.client(
    "s3",
    endpoint_url=env["BACKUP_EXT_S3_ENDPOINT"],
    aws_access_key_id=env["BACKUP_EXT_S3_ACCESS_KEY"],
    aws_secret_access_key=env["BACKUP_EXT_S3_SECRET_KEY"],
    region_name="us-east-1",
    config=Config(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 2},
        connect_timeout=5,
        read_timeout=60,
    ),
)
bucket = env["BACKUP_EXT_S3_BUCKET"]
op, args = sys.argv[1], sys.argv[2:]


def listing(operation, field, item, **kwargs):
    out = []
    for page in s3.get_paginator(operation).paginate(Bucket=bucket, **kwargs):
        out += [item(x) for x in page.get(field, [])]
    return json.dumps(out).encode()


def run():
    if op == "objects":
        return listing("list_objects_v2", "Contents", lambda o: [o["Key"], o["Size"]], Prefix=args[0])
    if op == "uploads":
        return listing("list_multipart_uploads", "Uploads", lambda u: [u["Key"], u["UploadId"]])
    if op == "get":
        return s3.get_object(Bucket=bucket, Key=args[0])["Body"].read()
    if op == "put":
        metadata = json.loads(args[1]) if len(args) > 1 else {}
        s3.put_object(Bucket=bucket, Key=args[0], Body=sys.stdin.buffer.read(), Metadata=metadata)
        return b""
    if op == "delete":
        s3.delete_object(Bucket=bucket, Key=args[0])
        return b""
    if op == "head":
        return json.dumps(s3.head_object(Bucket=bucket, Key=args[0])["Metadata"]).encode()
    if op == "create-upload":
        return s3.create_multipart_upload(Bucket=bucket, Key=args[0])["UploadId"].encode()
    sys.exit(f"unknown operation {op!r}")


try:
    sys.stdout.buffer.write(run())
except ClientError as e:
    sys.stderr.write(e.response["Error"]["Code"])
    sys.exit(3)
except BotoCoreError as e:
    sys.stderr.write(type(e).__name__)
    sys.exit(3)
