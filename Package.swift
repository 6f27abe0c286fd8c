// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "coditect-license-server",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "licensed", targets: ["licensed"]),
        .executable(name: "licensectl", targets: ["licensectl"]),
        .library(name: "LicenseClient", targets: ["LicenseClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", exact: "1.7.4"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", exact: "1.13.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", exact: "1.3.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", exact: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
    ],
    targets: [
        // Domain: tenants, licenses, sessions, seat semantics. No NIO, no database driver.
        .target(
            name: "LicenseCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Lease tokens: compact JWS (EdDSA, RS256, PS256), key files, JWKS.
        .target(
            name: "LicenseTokens",
            dependencies: [
                "LicenseCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // PKCS#11: the declarations licensed uses, written from the specification (no system
        // package needed to build); modules are loaded at run time with dlopen.
        .target(name: "CPKCS11"),
        // Lease-signing keys in HSMs and KMSs through PKCS#11.
        .target(
            name: "LicensePKCS11",
            dependencies: [
                "CPKCS11", "LicenseCore", "LicenseTokens",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Wire: generated protobuf types, frame codec, status mapping.
        .target(
            name: "LicenseWire",
            dependencies: [
                "LicenseCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        // OIDC ID-token sign-in: trusted issuers, JWKS fetched over HTTPS and cached.
        .target(
            name: "LicenseIdentity",
            dependencies: [
                "LicenseCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The load tester's engine: recordings, scenarios, replay over many connections, HDR histograms.
        .target(
            name: "LicenseLoad",
            dependencies: [
                "LicenseClient", "LicenseWire",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: strict
        ),
        // Embedded default backends: in-process seat store and SQLite repository.
        .target(
            name: "LicenseEmbedded",
            dependencies: [
                "LicenseCore",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Production seat store: Redis (or Redis Cluster) over SwiftNIO, Lua seat scripts.
        .target(
            name: "LicenseRedis",
            dependencies: [
                "LicenseCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Scripts")],
            swiftSettings: strict
        ),
        // Production repository: Postgres via postgres-nio, versioned migrations, row-level security.
        .target(
            name: "LicensePostgres",
            dependencies: [
                "LicenseCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The daemon's server: listener, TLS, connection state machine, dispatcher.
        .target(
            name: "LicenseServer",
            dependencies: [
                "LicenseCore", "LicenseWire", "LicenseTokens", "LicenseEmbedded", "LicenseRedis", "LicensePostgres", "LicenseIdentity", "LicensePKCS11",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The client library CODITECT links.
        .target(
            name: "LicenseClient",
            dependencies: [
                "LicenseCore", "LicenseWire", "LicenseTokens",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "licensed",
            dependencies: [
                "LicenseServer", "LicenseCore", "LicenseEmbedded", "LicenseTokens", "LicenseClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "licensectl",
            dependencies: [
                "LicenseClient", "LicenseWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "license-bench",
            dependencies: [
                "LicenseClient", "LicenseWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/LicenseBench",
            swiftSettings: strict
        ),
        // The load tester: replays recorded or built-in traffic and reports per-call latency.
        .executableTarget(
            name: "license-load",
            dependencies: [
                "LicenseLoad", "LicenseClient", "LicenseWire", "LicenseServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Benchmarks/LicenseLoadTool",
            swiftSettings: strict
        ),
        // An example program that uses the client library the way CODITECT does.
        .executableTarget(
            name: "license-example",
            dependencies: [
                "LicenseClient", "LicenseCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Examples/LicenseExample",
            swiftSettings: strict
        ),
        // libFuzzer target for the RESP decoder (a replayer of saved inputs when built normally).
        .executableTarget(
            name: "resp-fuzz",
            dependencies: [
                "LicenseRedis",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Fuzz/RESPFuzz",
            swiftSettings: strict
        ),
        .testTarget(
            name: "LicenseCoreTests",
            dependencies: [
                "LicenseCore", "LicenseEmbedded", "LicenseTokens", "LicenseRedis", "LicensePostgres", "BackendTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Starts real Redis and Postgres servers on free loopback ports for the tests; stops them by pid.
        .target(
            name: "BackendTestSupport",
            dependencies: [
                "LicenseCore", "LicenseRedis", "LicensePostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/BackendTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "LicenseClientTests",
            dependencies: ["LicenseClient", "LicenseCore", "LicenseTokens"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LicenseWireTests",
            dependencies: [
                "LicenseWire", "LicenseCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LicenseServerTests",
            dependencies: [
                "LicenseServer", "LicenseClient", "LicenseWire", "LicenseCore", "LicenseTokens",
                "LicenseRedis", "LicensePostgres", "LicenseIdentity", "LicenseLoad", "LicensePKCS11", "BackendTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
