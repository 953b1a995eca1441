"""Online serving: serve, serve-router, up, down, render-deployment."""

from __future__ import annotations

import sys

from invoke import Context, Exit, task

from .plumbing import OVERRIDE_HELP, checked_port, release_context


@task(
    help={
        **OVERRIDE_HELP,
        "version": "version to serve (default: this checkout's)",
        "port": "port on 127.0.0.1",
    },
    iterable=["override"],
)
def serve(
    c: Context,
    version: str | None = None,
    port: str = "8080",
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """serving: Serve one version's model at POST /v{version}/predict, with its own code."""
    port_number = checked_port(port)
    import os

    from {{ cookiecutter.package }}.serving.app import serve_command

    with release_context(env, override, version) as ctx:
        python = ctx.environments.python_for(ctx.names)
    command, environment = serve_command(python, ctx.names, port=port_number)
    sys.stdout.flush()
    os.execve(command[0], command, environment)  # the server replaces this process


@task(
    help={
        **OVERRIDE_HELP,
        "port": "port on 127.0.0.1",
        "upstream": "VERSION=URL of a version's server, e.g. 0.1.0=http://127.0.0.1:8081 "
        "(repeatable; others: serving.upstream_url)",
    },
    iterable=["override", "upstream"],
)
def serve_router(
    c: Context,
    port: str = "8000",
    upstream: list[str] | None = None,
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """serving: Serve POST /predict: each trip goes to the version serving its user cluster."""
    port_number = checked_port(port)
    with release_context(env, override) as ctx:
        from {{ cookiecutter.package }}.serving import router

        explicit = dict(spec.split("=", 1) for spec in upstream or [] if "=" in spec)
        if len(explicit) != len(upstream or []):
            raise Exit("error: write --upstream VERSION=URL", code=1)
        if explicit or ctx.env == "local":  # servers named by hand: each live one needed
            from {{ cookiecutter.package }}.artifacts import traffic

            unserved = router.unserved_clusters(traffic.current(ctx.store), explicit)
            if unserved:
                raise Exit(f"error: {unserved}", code=1)
        app = router.create_router(
            ctx.names.artifact_root,
            router.upstreams(str(ctx.cfg.serving.upstream_url), explicit, ctx.names.artifact_root),
            refresh_s=float(ctx.cfg.serving.traffic_refresh_seconds),
            timeout_s=float(ctx.cfg.serving.upstream_timeout_seconds),
            # traffic.shadow: the other live versions answer too, recorded as shadow rows.
            shadow_sink=ctx.predictions if ctx.cfg.traffic.shadow else None,
            shadow_versions=explicit,
            shadow_flush_s=float(ctx.cfg.serving.shadow_flush_seconds),
        )
    router.serve(app, port=port_number)


@task(
    help={**OVERRIDE_HELP, "status": "show what `inv up` started and whether each answers"},
    iterable=["override"],
)
def up(
    c: Context, env: str = "local", override: list[str] | None = None, status: bool = False
) -> None:
    """serving: Serve every live version (each in its environment) and the router, in background.

    Ports: `serving.local.first_port` and up for the versions, oldest first, and
    `serving.local.router_port` for the router. Logs in .serving/logs/; `inv down` stops them.
    """
    from {{ cookiecutter.package }}.release import local_servers
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    if status:
        print("\n".join(local_servers.status(PROJECT_ROOT)))
        return
    with release_context(env, override) as ctx:
        started = local_servers.up(ctx, override or [])
    for process in started:
        where = (
            f"{process.url}/predict"
            if process.name == "router"
            else (f"{process.url}/v{process.name}/predict")
        )
        print(f"{process.name:<10} {where}  (pid {process.pid}, log {process.log})")


@task
def down(c: Context) -> None:
    """serving: Stop exactly what `inv up` started."""
    from {{ cookiecutter.package }}.release import local_servers
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    print("\n".join(local_servers.down(PROJECT_ROOT)))


@task(
    help={
        **OVERRIDE_HELP,
        "version": "version to deploy (default: this checkout's)",
        "router": "render the router (POST /predict for every live version) instead",
    },
    iterable=["override"],
)
def render_deployment(
    c: Context,
    version: str | None = None,
    router: bool = False,
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """serving: Write a version's Kubernetes manifests (or the router's) to deploy/rendered/<env>/.

    deploy/rendered/<env>/<version>.yaml holds the Deployment, Service and Ingress of that
    version; with --router, deploy/rendered/<env>/router.yaml. The folder is ignored by git:
    apply it, or commit it to a GitOps repository.
    """
    from {{ cookiecutter.package }}.release import deployment

    with release_context(env, override, version) as ctx:
        deploy = ctx.project_root / "deploy"
        out = deploy / "rendered" / ctx.env
        print(deployment.write(ctx.names, deploy / "base", out, router=router))
