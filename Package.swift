// swift-tools-version:6.2
//
// The package graph is the architecture. Dependencies point one way:
//
//   MitmCore  <-  MitmAddons  <-  MitmServer  <-  mitmdump
//   MitmCertificates  <-----------'               |
//                     MitmAddons  <-  MitmOptions <-'
//   MitmCore  <-  MitmPathod  <-  pathod, pathoc, MitmTestSupport   (pathod and pathoc: the
//                 pathological HTTP toolkit; it uses only the core's escapes, and the proxy's tests use it)
//
// `MitmCore` is the sans-I/O protocol core: it may use NIOCore's ByteBuffer, NIOHTTP1's value
// types and swift-crypto's hashes, but never NIOPosix, NIOSSL or NIOHTTP2, so nothing in it can
// open a socket.
// `MitmCertificates` is swift-certificates + swift-crypto only. `MitmServer` is the only target that
// touches sockets and TLS.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    // Release builds drop the run-time exclusivity checks on our own code: they cost about 5% of a
    // proxied request. Debug builds, and so every test run, keep them.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "swift-mitmproxy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mitmdump", targets: ["mitmdump"]),
        .executable(name: "pathod", targets: ["pathod"]),
        .executable(name: "pathoc", targets: ["pathoc"]),
        .library(name: "MitmPathod", targets: ["MitmPathod"]),
        .library(name: "MitmCore", targets: ["MitmCore"]),
        .library(name: "MitmAddons", targets: ["MitmAddons"]),
        .library(name: "MitmCertificates", targets: ["MitmCertificates"]),
        .library(name: "MitmServer", targets: ["MitmServer"]),
        .library(name: "MitmIO", targets: ["MitmIO"]),
        .library(name: "MitmOptions", targets: ["MitmOptions"]),
        .library(name: "MitmTestSupport", targets: ["MitmTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // Tests start child processes (curl, python3, mitmdump) through Subprocess, not
        // Foundation's Process, whose run() can crash on Linux (swift-corelibs-foundation#5472).
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        // MARK: - System libraries (Debian: libbrotli-dev, libzstd-dev)
        .systemLibrary(name: "CBrotli", pkgConfig: "libbrotlidec", providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // MARK: - Sans-I/O core
        .target(
            name: "MitmCore",
            dependencies: [
                "CBrotli",
                "CZstd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Logging", package: "swift-log"),
                // SHA-1 for `{SHA}` htpasswd entries (proxyauth).
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MitmCertificates",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MitmIO",
            dependencies: [
                "MitmCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MitmAddons",
            dependencies: [
                "MitmCore",
                "MitmIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The options registry and config files (config.yaml, classic .conf).
        .target(
            name: "MitmOptions",
            dependencies: [
                "MitmCore",
                "MitmAddons",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: - The NIO shell
        .target(
            name: "MitmServer",
            dependencies: [
                "MitmCore",
                "MitmAddons",
                "MitmCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // pathod and pathoc: the spec language (sans-I/O, under Language/) and its NIO server and client.
        .target(
            name: "MitmPathod",
            dependencies: [
                "MitmCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MitmTestSupport",
            dependencies: [
                "MitmPathod",
                "MitmCore",
                "MitmAddons",
                "MitmCertificates",
                "MitmServer",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: - Executables
        .executableTarget(
            name: "mitmdump",
            dependencies: [
                "MitmServer",
                "MitmAddons",
                "MitmCore",
                "MitmOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "pathod",
            dependencies: ["MitmPathod", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "pathoc",
            dependencies: ["MitmPathod", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        // MARK: - Tests
        .testTarget(
            name: "MitmPathodTests",
            dependencies: ["MitmPathod", "MitmTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmCoreTests",
            dependencies: ["MitmCore", "MitmTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmCertificatesTests",
            dependencies: ["MitmCertificates", "MitmTestSupport"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmIOTests",
            dependencies: ["MitmIO", "MitmCore", "MitmTestSupport"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmAddonsTests",
            dependencies: ["MitmAddons", "MitmTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmOptionsTests",
            dependencies: ["MitmOptions", "MitmCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmServerTests",
            dependencies: [
                "MitmServer",
                "MitmTestSupport",
                "MitmCore",
                "MitmAddons",
                "MitmCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MitmIntegrationTests",
            dependencies: ["MitmServer", "MitmTestSupport", "MitmPathod"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
    ]
)
