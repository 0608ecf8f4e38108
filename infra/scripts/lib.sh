# Shared by the infra scripts.

# The machine's own Debian mirror, from an uncommented URIs: line (deb822) or a deb line.
debian_mirror() {
    local uri
    uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
    # one-line format; drop an options block such as [signed-by=...] before the URI
    [ -n "$uri" ] || uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | head -n1 | sed -E 's/\[[^]]*\] *//' | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

# `docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}'` on stdin: the images whose
# name starts with $1/, one a line, indented. (The CLI trims the spaces a format starts with,
# so the indent is added here, not in the format.)
image_sizes() {
    awk -F '\t' -v prefix="$1/" 'index($1, prefix) == 1 { printf "  %-40s %s\n", $1, $2 }'
}
