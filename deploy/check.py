"""Validates Cairn's deployment files; run through `deploy/check`, which provides the validators.

What it checks, in a directory laid out as `deploy/` is:
- every YAML and JSON file parses, and no mapping repeats a key (a YAML parser would otherwise
  keep the last one silently);
- `compose.yaml` against the Compose specification's JSON Schema, and that what it refers to
  exists: services in `depends_on` and in `http://host:port` addresses, named volumes, mounted
  files, and Dockerfile stages named as build targets;
- every Kubernetes manifest against the Kubernetes API schemas (kubernetes-validate, strict: no
  unknown fields), custom resources we ship by a check of our own, that selectors and scale
  targets match a Deployment, that every Deployment has a PodDisruptionBudget and probes, and
  that every container runs unprivileged (non-root, no privilege escalation, read-only root
  filesystem, no capabilities);
- the worker image's Node.js major version satisfies the pinned Claude Code CLI's `engines.node`.
Prints one line per problem, naming the file, and exits 1 if there is any.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

problems: list[str] = []


def problem(path: Path, message: str) -> None:
    problems.append(f"{path}: {message}")


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path) -> list:
    """All documents of a YAML file, or [] after recording why it does not parse."""
    try:
        with path.open() as f:
            return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"does not parse as YAML: {e}")
        return []


def dockerfile_stages(dockerfile: Path) -> dict[str, str]:
    """Stage name -> base image of each `FROM image AS name` line."""
    stages = {}
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"\s*FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            stages[m.group(2)] = m.group(1)
    return stages


def check_compose(path: Path, stages: dict[str, str]) -> None:
    docs = load_yaml(path)
    if not docs:
        return
    schema = subprocess.run(
        [
            str(Path(sys.executable).with_name("check-jsonschema")),
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if schema.returncode != 0:
        problem(path, "is not a valid Compose file:\n" + schema.stdout + schema.stderr)
    compose = docs[0]
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for dep in depends if isinstance(depends, list) else depends.keys():
            if dep not in services:
                problem(path, f"service {name} depends on {dep!r}, which is not defined")
        texts = [str(v) for v in (service.get("environment") or {}).values()]
        command = service.get("command") or []
        texts += [str(a) for a in (command if isinstance(command, list) else [command])]
        for text in texts:
            for host in re.findall(r"https?://([A-Za-z0-9_.-]+):\d+", text):
                if host not in services and host not in ("localhost", "127.0.0.1"):
                    problem(path, f"service {name} refers to host {host!r}, which is not a service")
        for mount in service.get("volumes") or []:
            source = str(mount).split(":")[0]
            if source.startswith((".", "/")):
                if source.startswith(".") and not (path.parent / source).exists():
                    problem(path, f"service {name} mounts {source}, which does not exist")
            elif source not in volumes:
                problem(path, f"service {name} uses volume {source!r}, which is not defined")
        build = service.get("build")
        if isinstance(build, dict) and build.get("target") and build["target"] not in stages:
            problem(path, f"service {name} builds stage {build['target']!r}, not in the Dockerfile")


# Custom resources we ship, which the Kubernetes API schemas do not cover: checked below.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def check_containers(path: Path, doc: dict) -> None:
    name = f"{doc['kind']} {doc['metadata']['name']}"
    spec = pod_spec(doc)
    pod_security = spec.get("securityContext") or {}
    for container in spec.get("containers", []):
        security = container.get("securityContext") or {}
        who = f"{name}, container {container['name']}"
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            problem(path, f"{who} may run as root (set runAsNonRoot)")
        if security.get("allowPrivilegeEscalation") is not False:
            problem(path, f"{who} allows privilege escalation")
        if security.get("readOnlyRootFilesystem") is not True:
            problem(path, f"{who} has a writable root filesystem")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            problem(path, f"{who} keeps its Linux capabilities (drop ALL)")
        if doc["kind"] == "Deployment" and "livenessProbe" not in container:
            problem(path, f"{who} has no livenessProbe")


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_kubernetes(paths: list[Path]) -> None:
    docs = [(p, d) for p in paths for d in load_yaml(p)]
    version = kubernetes_validate.latest_version()
    deployments = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("labels", {})
        for _, d in docs
        if d.get("kind") == "Deployment"
    }
    budgets = []
    for path, doc in docs:
        kind = (doc.get("apiVersion"), doc.get("kind"))
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if kind not in CUSTOM_KINDS:
                problem(path, f"{kind[1]} {kind[0]} is not a known Kubernetes kind")
                continue
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            problem(path, f"{kind[1]} {doc.get('metadata', {}).get('name')}: {where}: {e.message}")
            continue
        if pod_spec(doc) is not None:
            check_containers(path, doc)
        if doc["kind"] == "Service":
            selector = doc["spec"].get("selector") or {}
            if not any(selects(selector, labels) for labels in deployments.values()):
                problem(path, f"Service {doc['metadata']['name']} selects no Deployment's pods")
        if doc["kind"] == "PodDisruptionBudget":
            selector = doc["spec"]["selector"].get("matchLabels") or {}
            covered = [n for n, labels in deployments.items() if selects(selector, labels)]
            if not covered:
                problem(path, f"PodDisruptionBudget {doc['metadata']['name']} selects no pods")
            budgets += covered
        if kind == ("keda.sh/v1alpha1", "ScaledObject"):
            spec = doc.get("spec") or {}
            target = (spec.get("scaleTargetRef") or {}).get("name")
            if target not in deployments:
                problem(path, f"ScaledObject scales {target!r}, which is not a Deployment here")
            if not spec.get("triggers"):
                problem(path, "ScaledObject has no triggers")
    for name in deployments:
        if name not in budgets:
            problem(paths[0].parent, f"Deployment {name} has no PodDisruptionBudget")


def check_node_version(dockerfile: Path, stages: dict[str, str], lock: Path) -> None:
    if not lock.exists():
        problem(lock, "is missing (the worker image installs the CLI from it)")
        return
    packages = json.loads(lock.read_text())["packages"]
    wanted = packages["node_modules/@anthropic-ai/claude-code"]["engines"]["node"]
    minimum = int(re.search(r">=\s*(\d+)", wanted).group(1))
    base = stages.get("worker", "")
    m = re.match(r"node:(\d+)", base)
    if not m:
        problem(dockerfile, f"the worker stage is based on {base!r}, not an official node:N image")
    elif int(m.group(1)) < minimum:
        problem(
            dockerfile,
            f"the worker stage has Node.js {m.group(1)}, the pinned Claude Code CLI needs {wanted}",
        )


def main(root: Path) -> int:
    for path in sorted(root.rglob("*.json")):
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problem(path, f"does not parse as JSON: {e}")
    for path in sorted(root.rglob("*.y*ml")):
        load_yaml(path)
    dockerfile = root / "Dockerfile"
    stages = dockerfile_stages(dockerfile)
    check_compose(root / "compose.yaml", stages)
    check_kubernetes(sorted((root / "kubernetes").glob("*.yaml")))
    check_node_version(dockerfile, stages, root.parent / "tests/npm/package-lock.json")
    for line in dict.fromkeys(problems):
        print(line)
    if problems:
        print(f"deploy/check: {len(set(problems))} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"deploy/check: {root} is valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
