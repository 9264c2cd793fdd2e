"""SDL texts shared by the executor tests."""

from __future__ import annotations

from p2pakash.market.sdl import ManifestGroup, parse_sdl

BUSYBOX = "localhost/busybox:latest"


def web_sdl(*, image: str = BUSYBOX, count: int = 1, cpu: str = "0.25", memory: str = "64Mi",
            gpu: int = 0, command: str = '["sh", "-c"]',
            args: str = '["echo web up; echo oops >&2; exec httpd -f -p 8080"]') -> str:
    gpu_block = ""
    if gpu:
        gpu_block = (f"        gpu:\n          units: {gpu}\n          attributes:\n"
                     "            vendor:\n              nvidia:\n                - model: h100\n")
    return f"""\
version: "2.0"
services:
  web:
    image: {image}
    command: {command}
    args: {args}
    env: ["GREETING=hello", "EMPTY="]
    expose:
      - port: 8080
        as: 80
        to: [{{global: true}}]
      - port: 9000
        to: [{{service: worker}}]
  worker:
    image: {BUSYBOX}
    command: ["sleep"]
    args: ["3600"]
profiles:
  compute:
    web:
      resources:
        cpu: {{units: {cpu}}}
        memory: {{size: {memory}}}
        storage: {{size: 16Mi}}
{gpu_block}    worker:
      resources:
        cpu: {{units: 0.1}}
        memory: {{size: 32Mi}}
        storage: {{size: 16Mi}}
  placement:
    dc:
      pricing:
        web: {{denom: uakt, amount: 100}}
        worker: {{denom: uakt, amount: 10}}
deployment:
  web:
    dc: {{profile: web, count: {count}}}
  worker:
    dc: {{profile: worker, count: 1}}
"""


def group(text: str) -> ManifestGroup:
    groups = parse_sdl(text).manifest()
    assert len(groups) == 1
    return groups[0]
