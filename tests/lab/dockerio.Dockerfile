# A lab host as many labs have one: the distribution's Docker (Debian's docker.io, with containerd and runc) and
# no compose, plus a user without any sudo rights ("nosudo"). Built on the lab host image (host.Dockerfile):
#   docker build --build-arg BASE=local/gik-lab-host:<tag> -f dockerio.Dockerfile .
# Packages come from Debian's archive at build time only (the base image's source list), then the image keeps no
# apt source, as the lab host. policy-rc.d (as Debian's container images ship it) keeps postinst from starting a
# daemon that cannot run in a container; the host drives this machine's dockerd through its socket.
ARG BASE
FROM local/debian:bookworm AS sources
FROM ${BASE}
COPY --from=sources /etc/apt/sources.list /etc/apt/sources.list
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
 && useradd -m -s /bin/bash nosudo \
 && mkdir -p /home/nosudo/.ssh && chmod 700 /home/nosudo/.ssh && chown -R nosudo:nosudo /home/nosudo/.ssh \
 && rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && rm -rf /var/lib/apt/lists/*
