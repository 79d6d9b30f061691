# A lab host: Debian 12 with sshd and a non-root admin ("lab", NOPASSWD sudo), like a freshly installed server.
# Packages come from Debian's archive at build time only; then the image keeps no apt source at all: at run time
# the lab's mirror is its only repository (air-gapped).
FROM local/debian:bookworm
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openssh-server sudo iproute2 python3-apt python3-requests gpg ca-certificates >/dev/null \
 && useradd -m -s /bin/bash lab \
 && echo 'lab ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/lab && chmod 0440 /etc/sudoers.d/lab \
 && mkdir -p /run/sshd /home/lab/.ssh && chmod 700 /home/lab/.ssh && chown -R lab:lab /home/lab/.ssh \
 && rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && rm -rf /var/lib/apt/lists/*
CMD ["/usr/sbin/sshd", "-D", "-e"]
