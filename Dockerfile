# The licensed image: a static Swift build on Debian, run as a non-root user.
#
#   docker build -t coditect/licensed .
#   docker run -p 7443:7443 -v licensed-data:/var/lib/licensed coditect/licensed
#
# There is no Docker engine on the development machines: hadolint checks this file in the test
# suite (Tests/LicenseServerTests/PackagingTests.swift); the image itself is not built there.

# ---- build ----
FROM swift:6.3-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused until Package.swift changes.
COPY Package.swift ./
RUN swift package resolve
COPY . .
# --static-swift-stdlib: the runtime image needs no Swift toolchain, only libc and libstdc++.
RUN swift build -c release --product licensed --static-swift-stdlib \
 && mkdir -p /staging \
 && cp "$(swift build -c release --show-bin-path)/licensed" /staging/ \
 && strip --strip-debug /staging/licensed \
 && cp /usr/libexec/swift/linux/swift-backtrace-static /staging/

# ---- run ----
FROM debian:bookworm-slim
# CA certificates: licensed fetches identity providers' keys over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/licensed --shell /usr/sbin/nologin licensed \
 && install -d -o licensed -g licensed -m 0700 /var/lib/licensed
COPY --from=build /staging/licensed /usr/local/bin/licensed
COPY --from=build /staging/swift-backtrace-static /usr/libexec/swift/swift-backtrace-static
# Crash reports: a backtrace of every thread on standard error, with no interactive prompt.
ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=none,interactive=no,swift-backtrace=/usr/libexec/swift/swift-backtrace-static
USER 10001:10001
WORKDIR /var/lib/licensed
VOLUME ["/var/lib/licensed"]
# 7443: the license protocol (TLS); 9090: the ops port (health, readiness, metrics).
EXPOSE 7443 9090
ENTRYPOINT ["/usr/local/bin/licensed"]
CMD ["--data-dir", "/var/lib/licensed", "--listen", "0.0.0.0:7443", "--ops-listen", "0.0.0.0:9090"]
