"""Parses the Terraform files (python-hcl2) and checks what the original got wrong:
the SSM names used by the user data are the ones the IAM policy grants, and no ingress rule
is open to the world. Run by deploy/check.sh."""
import pathlib
import re
import sys

import hcl2

def unquote(node):
    """Newer python-hcl2 keeps HCL's quotes around names and strings; drop them."""
    if isinstance(node, dict):
        return {unquote(k): unquote(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


here = pathlib.Path(__file__).parent
docs = {}
for tf in sorted(here.glob("*.tf")):
    with tf.open() as f:
        docs[tf.name] = unquote(hcl2.load(f))
    print(f"parsed {tf.name}")

main = docs["main.tf"]
locals_ = {k: v for block in main["locals"] for k, v in block.items()}
for name in ("ssm_manager_ip", "ssm_join_token"):
    assert name in locals_, f"local {name} missing"

instance = next(r["aws_instance"]["worker"] for r in main["resource"] if "aws_instance" in r)
user_data = instance["user_data"]
for name in ("ssm_manager_ip", "ssm_join_token"):
    assert f"local.{name}" in user_data, f"user data does not use local.{name}"

policy = next(r["aws_iam_role_policy"]["read_join_data"] for r in main["resource"] if "aws_iam_role_policy" in r)
for name in ("ssm_manager_ip", "ssm_join_token"):
    assert f"local.{name}" in policy["policy"], f"IAM policy does not grant local.{name}"

template = (here / "user_data.sh.tftpl").read_text()
used = set(re.findall(r"\$\{(\w+)\}", template))
assert {"ssm_manager_ip", "ssm_join_token", "region"} <= used, used
assert "master_ip" not in template and "master_ip" not in user_data

sg = next(r["aws_security_group"]["worker"] for r in main["resource"] if "aws_security_group" in r)
for rule in sg["ingress"]:
    assert rule["cidr_blocks"] == ["${var.allowed_cidr}"], f"ingress open beyond allowed_cidr: {rule}"

variables = {k: v for block in docs["variables.tf"]["variable"] for k, v in block.items()}
assert "default" not in variables["allowed_cidr"], "allowed_cidr must have no default"
print("terraform: SSM names consistent, ingress limited to var.allowed_cidr")
