"""A SkyVault client in Python, from stubs generated out of proto/.

Shows the API and its consistency semantics from another language:
  1. a write returns its commit sequence;
  2. read-after-write: against `skyvault standalone` a plain BatchGet (no
     extension fields, as a client of the original API sends) sees the write
     acknowledged just before; `--distributed` skips that check, because a
     distributed index's default reads are eventual;
  3. a STRONG read (consistency = CONSISTENCY_STRONG) sees it anywhere;
  4. a session across processes: pass the write's sequence as min_sequence;
  5. deletes hide the key; a Scan follows page tokens to the end;
  6. bad input is INVALID_ARGUMENT naming the field.

Usage: python skyvault_example.py [--distributed] [--batcher HOST:PORT] [HOST:PORT]
(the generated modules must be importable: PYTHONPATH=gen, see README.md).
Prints one line per check and exits non-zero on the first failure.
"""

import argparse
import sys
import uuid

import grpc
from batcher.v1 import batcher_pb2, batcher_pb2_grpc
from index.v1 import index_pb2, index_pb2_grpc

DEADLINE_S = 10


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def put(batcher, key, value):
    write = batcher_pb2.WriteRequest(key=key, put=value)
    reply = batcher.BatchWrite(batcher_pb2.BatchWriteRequest(writes=[write]), timeout=DEADLINE_S)
    return reply.sequence


def delete(batcher, key):
    write = batcher_pb2.WriteRequest(key=key, delete=True)
    reply = batcher.BatchWrite(batcher_pb2.BatchWriteRequest(writes=[write]), timeout=DEADLINE_S)
    return reply.sequence


def get(index, key, **extensions):
    request = index_pb2.BatchGetRequest(keys=[key], **extensions)
    return index.BatchGet(request, timeout=DEADLINE_S).results.get(key)


def scan_all(index, prefix, page_size):
    """Every pair under `prefix`, following next_page_token."""
    items, token, pages = [], "", 0
    while True:
        request = index_pb2.ScanRequest(prefix=prefix, limit=page_size, page_token=token)
        page = index.Scan(request, timeout=DEADLINE_S)
        items.extend((kv.key, kv.value) for kv in page.items)
        pages += 1
        if not page.next_page_token:
            return items, pages
        token = page.next_page_token


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("addr", nargs="?", default="127.0.0.1:50051", help="index (or standalone)")
    parser.add_argument("--batcher", help="batcher address (default: addr)")
    parser.add_argument("--distributed", action="store_true")
    args = parser.parse_args()
    batcher = batcher_pb2_grpc.BatcherServiceStub(grpc.insecure_channel(args.batcher or args.addr))
    index = index_pb2_grpc.IndexServiceStub(grpc.insecure_channel(args.addr))
    run = uuid.uuid4().hex[:8]
    strong = index_pb2.CONSISTENCY_STRONG

    seq = put(batcher, f"py/{run}/a", b"1")
    check(seq > 0, f"put returned sequence {seq}")
    if not args.distributed:
        misses = 0
        for i in range(50):
            key, value = f"py/{run}/raw{i}", f"v{i}".encode()
            put(batcher, key, value)
            misses += get(index, key) != value
        check(misses == 0, f"plain reads right after 50 acknowledged writes: {misses} stale")
    key = f"py/{run}/strong"
    put(batcher, key, b"s")
    check(get(index, key, consistency=strong) == b"s", "strong read sees the acknowledged write")
    seq = put(batcher, key, b"s2")
    check(get(index, key, min_sequence=seq) == b"s2", f"read with min_sequence={seq} sees it")
    reply = index.BatchGet(index_pb2.BatchGetRequest(keys=[key], min_sequence=seq), timeout=DEADLINE_S)
    check(reply.sequence >= seq, f"the read reports the sequence it reflects ({reply.sequence})")

    seq = delete(batcher, f"py/{run}/a")
    check(get(index, f"py/{run}/a", min_sequence=seq) is None, "a deleted key is absent")

    for i in range(25):
        put(batcher, f"py/{run}/scan/{i:02d}", str(i).encode())
    # A strong read first, so the scan below runs on an index that has them all.
    get(index, f"py/{run}/scan/24", consistency=strong)
    items, pages = scan_all(index, f"py/{run}/scan/", page_size=10)
    keys = [k for k, _ in items]
    check(len(items) == 25 and keys == sorted(keys), f"scan returned 25 ordered pairs in {pages} pages")

    try:
        index.BatchGet(index_pb2.BatchGetRequest(keys=[""]), timeout=DEADLINE_S)
        check(False, "an empty key is refused")
    except grpc.RpcError as e:
        named = e.code() == grpc.StatusCode.INVALID_ARGUMENT and "keys[0]" in e.details()
        check(named, f"an empty key is refused: {e.code().name}: {e.details()}")
    print("all checks passed")


if __name__ == "__main__":
    main()
