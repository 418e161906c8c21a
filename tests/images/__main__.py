"""python -m tests.images build [--image NAME:TAG --workflows-dir D --dbt-dir D --plugin-dir D]
python -m tests.images load --ctr PATH --address SOCKET [--namespace k8s.io] [--snapshotter NAME]"""

from __future__ import annotations

import argparse

from tests.images import build


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.images")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build (or take from the cache) every image; write the index")
    b.add_argument("--image", help="also bake a workflow image under this name from the directories below")
    b.add_argument("--workflows-dir")
    b.add_argument("--dbt-dir")
    b.add_argument("--plugin-dir")
    ld = commands.add_parser("load", help="import the indexed archives into containerd (skips those present)")
    ld.add_argument("--ctr", required=True)
    ld.add_argument("--address", required=True)
    ld.add_argument("--namespace", default="k8s.io")
    ld.add_argument("--snapshotter")
    args = parser.parse_args()
    if args.command == "build":
        dirs = {"WORKFLOWS_DIR": args.workflows_dir, "DBT_DIR": args.dbt_dir, "PLUGIN_DIR": args.plugin_dir}
        if any(dirs.values()) and not args.image:
            parser.error("--workflows-dir/--dbt-dir/--plugin-dir need --image NAME:TAG")
        build.build_all(args.image, dirs)
    else:
        build.load(args.ctr, args.address, args.namespace, args.snapshotter)


if __name__ == "__main__":
    main()
