// swift-tools-version: 6.1
// ichd: intracranial-hemorrhage alert appliance.
// Data flows one way: ingest -> preprocessing -> engine -> decision -> alerts. Each layer is one target;
// C libraries enter through small C* targets and get Swift names in the layer that owns them.
import PackageDescription

// DCMTK 3.6.7 as Debian ships it: `pkg-config dcmtk` is broken (it requires sndfile), so the libraries
// are listed by hand. Order matters for static linking only; keep codecs before dcmdata.
let dcmtkLibraries = ["dcmjpls", "dcmjpeg", "ijg8", "ijg12", "ijg16", "dcmimage", "dcmimgle", "dcmdata", "oflog", "ofstd"]

let package = Package(
    name: "ichd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "ichd", targets: ["ichd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // C++ shim over DCMTK with a plain C ABI (Swift's C++ interop does not import DCMTK cleanly).
        .target(
            name: "CDicom",
            cxxSettings: [.unsafeFlags(["-Wno-deprecated-declarations"])],
            linkerSettings: dcmtkLibraries.map { .linkedLibrary($0) } + [.linkedLibrary("z")]
        ),
        .systemLibrary(
            name: "CTurboJPEG",
            pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"])]
        ),
        .systemLibrary(
            name: "CGPIOD",
            pkgConfig: "libgpiod",
            providers: [.apt(["libgpiod-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(name: "CMalloc"),
        .target(name: "ICHIngest", dependencies: ["CDicom", "CTurboJPEG", "CZlib"]),
        .target(name: "ICHPreprocessing", dependencies: ["ICHIngest"]),
        .target(name: "ICHPhantom", dependencies: ["ICHIngest"]),
        // Integer kernels: standard library only, so ../shared/tools/a64 can compile them for aarch64.
        .target(name: "ICHKernels"),
        // Weights in (safetensors, torchvision/fastai layouts), the .ichm model file out.
        .target(name: "ICHModel", dependencies: ["ICHPreprocessing", "ICHIngest", .product(name: "Crypto", package: "swift-crypto")]),
        // Float reference and int8 executors, class activation maps, the scorer the daemon calls.
        .target(name: "ICHEngine", dependencies: ["ICHModel", "ICHKernels", "ICHPreprocessing", "ICHIngest"]),
        // Calibration, quantisation and the accuracy report of `ichd convert`.
        .target(name: "ICHConverter", dependencies: ["ICHEngine", "ICHModel", "ICHPreprocessing", "ICHPhantom"]),
        // `ichd eval`: labelled slices through the real pipeline, RSNA metrics.
        .target(name: "ICHDecision", dependencies: ["ICHEngine", "ICHPreprocessing"]),
        .target(name: "ICHEvaluation", dependencies: ["ICHEngine", "ICHDecision", "ICHPhantom", "ICHPreprocessing", "ICHIngest"]),
        // The appliance's voices: serial line protocol, GPIO lamp and button. Receives decisions only.
        .target(name: "ICHAlerts", dependencies: ["CGPIOD", .product(name: "Logging", package: "swift-log")]),
        // `ichd run`: drop folder -> ingest -> preprocessing -> engine -> series decision -> alerts, with the
        // journal (SQLite through GRDB) that makes it exactly-once across crashes.
        .target(name: "ICHDaemon", dependencies: [
            "ICHIngest", "ICHPreprocessing", "ICHModel", "ICHEngine", "ICHDecision", "ICHAlerts",
            .product(name: "Logging", package: "swift-log"), .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // The local web console (`[console]`, `ichd serve`): status, upload-and-score, acknowledge, /metrics.
        // A view onto the daemon (or a scorer of its own for `ichd serve`); the daemon knows nothing of HTTP.
        .target(name: "ICHConsole", dependencies: [
            "ICHIngest", "ICHPreprocessing", "ICHEngine", "ICHDecision", "ICHAlerts", "ICHDaemon",
            .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "MultipartKit", package: "multipart-kit"), .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CoreMetrics", package: "swift-metrics"), .product(name: "Logging", package: "swift-log"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .executableTarget(
            name: "ichd",
            dependencies: [
                "ICHIngest", "ICHPreprocessing", "ICHPhantom", "ICHAlerts", "ICHModel", "ICHKernels", "ICHEngine", "ICHConverter", "ICHDecision", "ICHEvaluation",
                "ICHDaemon", "ICHConsole", "CMalloc", .product(name: "Logging", package: "swift-log"), .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Shared by the test targets only: temp folders, fixture files, the public test-file cache.
        .target(name: "ICHTestSupport", dependencies: ["ICHIngest", "ICHPhantom", "ICHModel"]),
        .testTarget(name: "ICHIngestTests", dependencies: ["ICHIngest", "ICHPhantom", "ICHTestSupport", "CZlib"]),
        .testTarget(name: "ICHPreprocessingTests", dependencies: ["ICHPreprocessing", "ICHIngest", "ICHPhantom", "ICHTestSupport"]),
        .testTarget(name: "ICHAlertsTests", dependencies: ["ICHAlerts"]),
        .testTarget(name: "ICHDaemonTests", dependencies: ["ICHDaemon", "ICHAlerts", "ICHDecision", "ICHEngine", "ICHIngest", "ICHPhantom", "ICHTestSupport",
                                                    .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "ICHPhantomTests", dependencies: ["ICHPhantom", "ICHIngest"]),
        .testTarget(name: "ICHEvaluationTests", dependencies: ["ICHEvaluation", "ICHDecision", "ICHEngine", "ICHTestSupport"]),
        .testTarget(name: "ICHModelTests", dependencies: ["ICHModel", "ICHTestSupport"]),
        .testTarget(name: "ICHEngineTests", dependencies: ["ICHEngine", "ICHModel", "ICHKernels", "ICHConverter", "ICHPreprocessing", "ICHPhantom", "ICHTestSupport"]),
        .testTarget(name: "ICHConsoleTests", dependencies: [
            "ICHConsole", "ICHDaemon", "ICHDecision", "ICHAlerts", "ICHEngine", "ICHIngest", "ICHPhantom", "ICHTestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "ichdTests", dependencies: ["ICHIngest", "ICHPreprocessing", "ICHPhantom", "ICHModel", "ICHDaemon", "ICHAlerts", "ICHTestSupport"]),
    ],
    cxxLanguageStandard: .cxx17
)
