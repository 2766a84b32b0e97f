#!/usr/bin/env python3
"""Static checks of docker-compose.yml and the Dockerfiles (no Docker engine runs in CI):
the compose file parses, every service it builds names a Dockerfile that exists, every
binary a service runs is one that Dockerfile installs, and every environment variable it
sets is one the configuration knows (README's table)."""
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
problems = []
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
readme = (root / "README.md").read_text()
known_vars = set(re.findall(r"^\| `([A-Z_]+)`", readme, re.M))
known_vars |= {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PGUSER"}

for name, service in compose.get("services", {}).items():
    build = service.get("build")
    if build:
        dockerfile = root / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        if not dockerfile.exists():
            problems.append(f"{name}: {dockerfile} does not exist")
            continue
        text = dockerfile.read_text()
        command = service.get("command") or []
        entry = service.get("entrypoint") or []
        for word in (entry if isinstance(entry, list) else entry.split()):
            if word.startswith("crewgraph") and word not in text:
                problems.append(f"{name}: runs {word}, which {dockerfile.name} does not install")
        if not re.search(r"^USER\s+(?!root)", text, re.M):
            problems.append(f"{dockerfile.name}: the runtime image must not run as root")
    env = service.get("environment") or {}
    keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
    for key in keys:
        if key not in known_vars:
            problems.append(f"{name}: sets {key}, which README's configuration table does not list")
    for dep in (service.get("depends_on") or {}):
        if dep not in compose["services"]:
            problems.append(f"{name}: depends on unknown service {dep}")

for dockerfile in ["Dockerfile.api", "Dockerfile.worker"]:
    text = (root / dockerfile).read_text()
    if "--locked" not in text:
        problems.append(f"{dockerfile}: cargo build must use --locked")
    copied = re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.M)
    for path in copied:
        if path != "." and not (root / path).exists():
            problems.append(f"{dockerfile}: COPY {path}: no such path")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"docker-compose.yml ({len(compose['services'])} services) and Dockerfiles look consistent")
