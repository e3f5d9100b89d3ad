"""Evaluate a proxy auto-config file with pacparser (a real PAC engine).

Usage: pac_eval.py PAC_FILE HOST...

Prints one JSON object: {host: what FindProxyForURL returns for https://host/}.
"""

import json
import sys

import pacparser


def main():
    pac_file, hosts = sys.argv[1], sys.argv[2:]
    pacparser.init()
    with open(pac_file, encoding="utf-8") as f:
        # Raises on a script it cannot parse.
        pacparser.parse_pac_string(f.read())
    answers = {host: pacparser.find_proxy(f"https://{host}/", host) for host in hosts}
    pacparser.cleanup()
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
