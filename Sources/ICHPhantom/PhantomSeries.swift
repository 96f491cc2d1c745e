import Foundation
import ICHIngest

/// A synthetic axial head-CT series of a `HeadPhantom`: slice identities (UIDs under 2.25, positions, spacing),
/// the bleeds of a positive series (one to three subtypes), per-slice labels from what was drawn, and the
/// storage the series is written in (the variants scanners send).
public struct PhantomSeries: Sendable {
    public struct Slice: Sendable {
        public var image: HounsfieldImage
        public var identity: CTSliceIdentity
        /// RSNA subtypes present in this slice ("any" included when any is).
        public var labels: Set<String>
        /// Blood pixels drawn per subtype (subtype raw value -> count; below a few pixels it is not labelled).
        public var bloodPixels: [String: Int]
    }

    public var seed: UInt64
    public var positive: Bool
    public var size: Int = 512
    public var sliceSpacing: Double = 5
    /// The generator family (docs/phantoms.md); each has UIDs of its own (2.25.seed.1/2/3...: standard, held-out,
    /// varied).
    public var family: HeadPhantom.Family = .standard

    public init(seed: UInt64, positive: Bool, size: Int = 512, family: HeadPhantom.Family = .standard) {
        self.seed = seed
        self.positive = positive
        self.size = size
        self.family = family
    }

    /// Deterministic UIDs under the UUID-derived root 2.25 (no organisation root needed).
    static func uid(_ parts: UInt64...) -> String {
        "2.25." + parts.map { String($0) }.joined(separator: ".")
    }

    /// The bleeds of this series: none for a negative one, one to three distinct subtypes for a positive one.
    public var subtypes: [HeadPhantom.Subtype] {
        guard positive else { return [] }
        var rng = SeededGenerator(seed: seed ^ 0xB1EED)
        var all = HeadPhantom.Subtype.allCases
        all.shuffle(using: &rng)
        return Array(all.prefix(1 + Int(rng.next() % 3)))
    }

    /// How the series is stored, varied by seed over what the field sends: signed and unsigned, 12 and 16 bits
    /// stored, the RSNA wrapped form, other slopes, and compressed transfer syntaxes.
    public var storage: CTStorage {
        let variants: [CTStorage] = [
            CTStorage(),
            CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024, transferSyntax: TransferSyntax.implicitLittleEndian),
            .rsnaWrappedUnsigned12,
            CTStorage(transferSyntax: TransferSyntax.jpegLosslessSV1),
            CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024, transferSyntax: TransferSyntax.rleLossless),
            CTStorage(transferSyntax: TransferSyntax.jpegLSLossless),
            CTStorage(signed: false, rescaleSlope: 0.5, rescaleIntercept: -2048, transferSyntax: TransferSyntax.deflatedExplicitLittleEndian),
        ]
        return variants[Int(seed % UInt64(variants.count))]
    }

    public func slices() -> [Slice] {
        let head = HeadPhantom(seed: seed, subtypes: subtypes, sliceSpacing: sliceSpacing, family: family)
        let tag: UInt64 = switch family { case .standard: 1; case .heldOut: 2; case .varied: 3 }
        let study = Self.uid(seed, tag), series = Self.uid(seed, tag, 1)
        let fov = head.fieldOfView, pixelSpacing = fov / Double(size)
        return (0..<head.sliceCount).map { k in
            let (image, drawn, pixelCounts) = head.render(slice: k, size: size)
            var identity = CTSliceIdentity(studyInstanceUID: study, seriesInstanceUID: series,
                                           sopInstanceUID: Self.uid(seed, tag, 1, UInt64(k + 1)), instanceNumber: k + 1)
            identity.imagePositionPatient = [-fov / 2, -fov / 2, head.sliceZ(k)]
            identity.pixelSpacing = [pixelSpacing, pixelSpacing]
            identity.sliceThickness = head.sliceThickness
            identity.accessionNumber = "PH\(seed)"
            let labels = drawn.isEmpty ? Set<String>() : Set(["any"] + drawn.map(\.rawValue))
            return Slice(image: image, identity: identity, labels: labels,
                         bloodPixels: Dictionary(uniqueKeysWithValues: pixelCounts.map { ($0.key.rawValue, $0.value) }))
        }
    }

    /// Writes the series through DCMTK as `<folder>/<instance, 3 digits>.dcm` (the folder is created) in
    /// `storage` (default: this series' own variant); returns the slices with their labels.
    @discardableResult
    public func write(to folder: String, storage: CTStorage? = nil) throws(DicomWriter.WriteError) -> [Slice] {
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw DicomWriter.WriteError(description: "cannot create \(folder): \(error.localizedDescription)")
        }
        let slices = slices()
        for slice in slices {
            let path = (folder as NSString).appendingPathComponent(String(format: "%03d.dcm", slice.identity.instanceNumber))
            try CTSliceWriter.write(image: slice.image, identity: slice.identity, storage: storage ?? self.storage, to: path)
        }
        return slices
    }
}
