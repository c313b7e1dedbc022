#!/bin/bash
# Installs the deployment's files from /deploy (a read-only bind mount; every file is
# optional) over the packaged configuration, then runs radiusd in the foreground, logging
# to stdout (docker logs). Files:
#   /deploy/rust          -> mods-available/rust      (module options: policy, DNS, HTTPS)
#   /deploy/eap-dane      -> mods-available/eap-dane  (TLS settings; rlm_rust hooks the
#                            tls-config named by the rust module's eap_instance/tls_config)
#   /deploy/clients.conf  -> clients.conf             (the access points / NAS)
#   /deploy/server.pem, /deploy/server.key -> certs/  (the RADIUS server's TLS identity)
# RADIUSD_ARGS: extra freeradius flags (default -X: full debug log, what the harness reads;
# use "-l stdout" style flags without -X in production).
set -euo pipefail
d=/etc/freeradius/3.0
put() { # put SRC DEST MODE
  if [ -f "$1" ]; then
    rm -f "$2"
    install -m "$3" -o root -g freerad "$1" "$2"
  fi
}
put /deploy/rust "$d/mods-available/rust" 0640
put /deploy/eap-dane "$d/mods-available/eap-dane" 0640
put /deploy/clients.conf "$d/clients.conf" 0640
put /deploy/server.pem "$d/certs/server.pem" 0640
put /deploy/server.key "$d/certs/server.key" 0640
install -d -o freerad -g freerad -m 0750 /var/lib/rlm_rust
install -d -o freerad -g freerad -m 0755 "$d/certs/dane-ca"
# eap_dane's TLS session cache (persist_dir = ${logdir}/tlscache): the package's postinst
# makes it, but /var/log may be a fresh volume. radiusd does not create it, and without it
# no session is persisted, so no re-authentication can resume.
install -d -o freerad -g freerad -m 0700 /var/log/freeradius/tlscache
# Line-buffered stdout: without it the log reaches `docker logs` in 4 KiB blocks, late.
exec stdbuf -oL -eL freeradius -f ${RADIUSD_ARGS:--X}
