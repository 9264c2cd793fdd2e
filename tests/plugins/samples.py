"""SDL documents and the deployment groups Akash builds from them, for pricing tests."""

from __future__ import annotations

from p2pakash.market.sdl import GroupSpec, parse_sdl
from p2pakash.plugins.types import AllocatedResources, PluginConfig, ProviderContext

GPU_SDL = """\
version: "2.0"
services:
  web:
    image: nginx
    expose:
      - port: 80
        as: 80
        to:
          - global: true
    params:
      storage:
        data:
          mount: /data
profiles:
  compute:
    web:
      resources:
        cpu: {units: 1}
        memory: {size: 512Mi}
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes: {persistent: true, class: beta3}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
                  ram: 80Gi
                  interface: sxm
  placement:
    dc:
      pricing:
        web: {denom: uakt, amount: 10000}
deployment:
  web:
    dc: {profile: web, count: 1}
"""

CPU_SDL = """\
version: "2.0"
services:
  app:
    image: busybox
    expose:
      - port: 8080
        as: 8080
        to:
          - global: true
profiles:
  compute:
    app:
      resources:
        cpu: {units: 2}
        memory: {size: 4Gi}
        storage:
          - size: 20Gi
  placement:
    dc:
      pricing:
        app: {denom: uakt, amount: PRICE}
deployment:
  app:
    dc: {profile: app, count: 3}
"""

OWNER = "akash1tenant0000000000000000000000000000000"


def group(text: str) -> GroupSpec:
    return parse_sdl(text, source="test.yaml").groups()[0]


def cpu_group(max_price: int = 1000) -> GroupSpec:
    return group(CPU_SDL.replace("PRICE", str(max_price)))


def gpu_group() -> GroupSpec:
    return group(GPU_SDL)


def allocated(g: GroupSpec) -> AllocatedResources:
    return AllocatedResources.from_group(g)


def context(order_id: str = "akash1tenant/1/1/1") -> ProviderContext:
    return ProviderContext(owner=OWNER, provider="akash1provider", order_id=order_id)


def config(**table: object) -> PluginConfig:
    return PluginConfig.from_table({"entry_points": False, "gpu_probes": [], **table})
