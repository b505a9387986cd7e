"""A small boto3 command line for the S3 test server (scripts/s3-test-server.sh).

    python s3-tool.py create-bucket BUCKET
    python s3-tool.py put BUCKET KEY FILE      (FILE "-": standard input)
    python s3-tool.py get BUCKET KEY [FILE]    (to standard output without FILE)
    python s3-tool.py delete BUCKET KEY        (a missing key is no error, as in S3)
    python s3-tool.py list BUCKET [PREFIX]     (the keys, one a line, in S3's order)

Run it with the test virtual environment's Python (target/s3-venv/bin/python), which has
boto3. The endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION (what `s3-test-server.sh start` prints); no config files,
no profiles, path-style addressing, one attempt per request (a stopped server is an error at
once, not after retries).

Exit status: 0 done; 3 `get` of a key that does not exist (NoSuchKey); 1 any other error
(the S3 error code and message, or the connection error, on standard error); 2 usage.
"""

import os
import sys

NOT_FOUND = 3


def client():
    # no ~/.aws files or profiles of the machine: only what the environment names
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ.pop("AWS_PROFILE", None)
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        die("AWS_ENDPOINT_URL is not set (eval \"$(scripts/s3-test-server.sh start DIR)\")")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        aws_session_token=None,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def die(msg, code=1):
    print(f"s3-tool: {msg}", file=sys.stderr)
    sys.exit(code)


def usage():
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)


def main(argv):
    if not argv:
        usage()
    cmd, args = argv[0], argv[1:]
    arity = {"create-bucket": (1, 1), "put": (3, 3), "get": (2, 3), "delete": (2, 2), "list": (1, 2)}
    if cmd not in arity or not arity[cmd][0] <= len(args) <= arity[cmd][1]:
        usage()

    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client()
    try:
        if cmd == "create-bucket":
            s3.create_bucket(Bucket=args[0])
        elif cmd == "put":
            bucket, key, path = args
            body = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        elif cmd == "get":
            bucket, key = args[:2]
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "NoSuchKey":
                    die(f"no such key: s3://{bucket}/{key}", NOT_FOUND)
                raise
            if len(args) == 3 and args[2] != "-":
                with open(args[2], "wb") as f:
                    f.write(body)
            else:
                sys.stdout.buffer.write(body)
                sys.stdout.buffer.flush()
        elif cmd == "delete":
            s3.delete_object(Bucket=args[0], Key=args[1])
        elif cmd == "list":
            bucket = args[0]
            prefix = args[1] if len(args) == 2 else ""
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    sys.stdout.write(obj["Key"] + "\n")
    except ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        die(f"{cmd} {' '.join(args)}: HTTP {status} {err.get('Code')}: {err.get('Message')}")
    except (BotoCoreError, OSError) as e:
        die(f"{cmd} {' '.join(args)}: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
