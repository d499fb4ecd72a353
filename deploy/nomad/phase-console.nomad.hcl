# Phase Console's backend with phase-sidecar on Nomad (docker driver).
#
# - secrets-init (prestart, ephemeral) runs `phase-sidecar once`: the main
#   task starts only after it wrote every required secret. Nomad starts main
#   tasks as soon as a prestart *sidecar* is running, not when it is ready,
#   so the sidecar alone cannot hold the app back.
# - phase-sidecar (prestart, sidecar = true) keeps running, follows
#   rotations and sends SIGHUP to gunicorn through a pid file in the
#   allocation's shared alloc/ directory.
# - The secrets live on a tmpfs-backed Docker volume mounted in all three
#   tasks. Nomad's own shared alloc/ directory is on the client's disk, and
#   each task's secrets/ directory is private to that task: neither fits.
# - Vault login uses the task's workload identity (a JWT that Nomad signs,
#   Nomad >= 1.7 identity block) with Vault's jwt auth method; see
#   docs/nomad.md for the Vault side.
#
# nomad job run phase-console.nomad.hcl

variable "sidecar_image" {
  type    = string
  default = "ghcr.io/phase-sidecar/phase-sidecar:latest"
}

variable "backend_image" {
  type    = string
  default = "phasehq/backend:latest"
}

locals {
  # The sidecar's config, shared by secrets-init and phase-sidecar. Secrets
  # are the backend's examples from deploy/phase/catalogue.yaml.
  sidecar_config = <<-EOF
    output:
      dir: /run/secrets
      mode: "0440"
    listen: ":9102"
    refresh: 5m
    sources:
      vault:
        address: https://vault.service.consul:8200
        auth:
          method: jwt
          mount: jwt-nomad
          role: phase-console
          jwt_file: /secrets/nomad_vault_default.jwt
    secrets:
      - name: SECRET_KEY
        ref: vault://secret/phase/console#secret_key
      - name: SERVER_SECRET
        ref: vault://secret/phase/console#server_secret
      - name: DATABASE_PASSWORD
        ref: vault://secret/phase/console#database_password
      - name: REDIS_PASSWORD
        ref: vault://secret/phase/console#redis_password
        required: false
      - name: GOOGLE_CLIENT_SECRET
        ref: vault://secret/phase/console#google_client_secret
        required: false
    reload:
      signal:
        name: SIGHUP
        pid_file: /alloc/gunicorn.pid
      coalesce: 2s
  EOF
}

job "phase-console" {
  datacenters = ["dc1"]
  type        = "service"

  group "backend" {
    count = 2

    network {
      port "http" {
        to = 8000
      }
      port "metrics" {
        to = 9102
      }
    }

    service {
      name = "phase-sidecar"
      port = "metrics"
      tags = ["metrics"]
      check {
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "secrets-init" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      identity {
        name = "vault_default"
        aud  = ["vault.io"]
        ttl  = "1h"
        file = true
      }

      config {
        image = var.sidecar_image
        args  = ["once", "--config", "/local/phase-sidecar.yaml", "--log-format", "json"]

        mount {
          type   = "volume"
          target = "/run/secrets"
          source = "phase-secrets-${NOMAD_ALLOC_ID}"
          volume_options {
            no_copy = true
            driver_config {
              name = "local"
              options {
                type   = "tmpfs"
                device = "tmpfs"
                o      = "size=1m,uid=1000,gid=1000,mode=0750"
              }
            }
          }
        }
      }

      user = "1000:1000"

      template {
        destination = "local/phase-sidecar.yaml"
        data        = local.sidecar_config
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }

    task "phase-sidecar" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      identity {
        name = "vault_default"
        aud  = ["vault.io"]
        ttl  = "1h"
        file = true
      }

      config {
        image = var.sidecar_image
        args  = ["run", "--config", "/local/phase-sidecar.yaml", "--log-format", "json"]
        ports = ["metrics"]
        # Host PID namespace, so that the pid in /alloc/gunicorn.pid (also
        # written from the host namespace, see the backend) can be signalled.
        # Without it, use an HTTP reload instead (docs/nomad.md).
        pid_mode        = "host"
        readonly_rootfs = true
        cap_drop        = ["ALL"]
        security_opt    = ["no-new-privileges"]

        mount {
          type   = "volume"
          target = "/run/secrets"
          source = "phase-secrets-${NOMAD_ALLOC_ID}"
          volume_options {
            no_copy = true
            driver_config {
              name = "local"
              options {
                type   = "tmpfs"
                device = "tmpfs"
                o      = "size=1m,uid=1000,gid=1000,mode=0750"
              }
            }
          }
        }
      }

      user = "1000:1000"

      template {
        destination = "local/phase-sidecar.yaml"
        data        = local.sidecar_config
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }

    task "backend" {
      driver = "docker"

      config {
        image    = var.backend_image
        ports    = ["http"]
        pid_mode = "host"

        mount {
          type     = "volume"
          target   = "/run/secrets"
          source   = "phase-secrets-${NOMAD_ALLOC_ID}"
          readonly = true
          volume_options {
            no_copy = true
            driver_config {
              name = "local"
              options {
                type   = "tmpfs"
                device = "tmpfs"
                o      = "size=1m,uid=1000,gid=1000,mode=0750"
              }
            }
          }
        }
      }

      user = "1000:1000"

      env {
        # Generated: phase-sidecar env --format shell (deploy/phase/catalogue.yaml).
        DATABASE_PASSWORD_FILE    = "/run/secrets/database_password"
        GOOGLE_CLIENT_SECRET_FILE = "/run/secrets/google_client_secret"
        REDIS_PASSWORD_FILE       = "/run/secrets/redis_password"
        SECRET_KEY_FILE           = "/run/secrets/secret_key"
        SERVER_SECRET_FILE        = "/run/secrets/server_secret"
        EXTERNAL_MIGRATION        = "true"
        # gunicorn writes its master's pid where the sidecar reads it.
        GUNICORN_CMD_ARGS = "--pid /alloc/gunicorn.pid"
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
