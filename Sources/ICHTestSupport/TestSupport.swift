import Foundation
import ICHIngest
import ICHPhantom

/// A fresh folder under the system temp dir, removed when the value is released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL
    public var path: String { url.path }

    public init(_ label: String = "ichd-test") {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Public DICOM test files (from the pydicom wheel on PyPI), fetched by `scripts/fetch-test-data.sh` into
/// `.cache/public-dicom` (or $ICHD_PUBLIC_DICOM). Third-party files are never committed.
public enum PublicDicomFiles {
    public static var directory: URL {
        if let env = ProcessInfo.processInfo.environment["ICHD_PUBLIC_DICOM"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.appendingPathComponent(".cache/public-dicom")
    }

    public static var available: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("CT_small.dcm").path)
    }

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The package root, found from this source file's location.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// Fixture slices written through the real DCMTK writer.
public enum Fixtures {
    public static func identity(_ n: Int = 1) -> CTSliceIdentity {
        CTSliceIdentity(
            studyInstanceUID: "1.2.826.0.1.3680043.10.1137.1",
            seriesInstanceUID: "1.2.826.0.1.3680043.10.1137.1.1",
            sopInstanceUID: "1.2.826.0.1.3680043.10.1137.1.1.\(n)", instanceNumber: n)
    }

    /// A small synthetic head (64x64 by default) with values covering air, brain, bleed and bone.
    public static func head(size: Int = 64, bleed: Bool = false, seed: UInt64 = 7) -> HounsfieldImage {
        var synth = HeadSliceSynthesizer(size: size, seed: seed)
        if bleed { synth.bleed = (0.42, 0.45, 0.06, 70) }
        return synth.render()
    }

    @discardableResult
    public static func writeSlice(_ image: HounsfieldImage, to path: String, storage: CTStorage = CTStorage(),
                                  identity: CTSliceIdentity = identity(),
                                  edit: (DicomWriter) throws -> Void = { _ in }) throws -> String {
        let writer = try CTSliceWriter.makeWriter(image: image, identity: identity, storage: storage)
        try edit(writer)
        try writer.write(to: path, transferSyntax: storage.transferSyntax, withMetaHeader: storage.withMetaHeader)
        return path
    }
}
