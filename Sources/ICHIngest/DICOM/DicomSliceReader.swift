/// Bounds checked before any pixel is decoded, so a hostile or broken header cannot make ichd allocate
/// gigabytes (DCMTK itself would render a 65535 x 65535 header).
public struct IngestLimits: Sendable, Equatable {
    /// Largest Rows or Columns accepted. Head CT is 512 (sometimes 768 or 1024).
    public var maxDimension: Int = 2048
    /// Most frames in one multi-frame object.
    public var maxFrames: Int = 4096

    public init(maxDimension: Int = 2048, maxFrames: Int = 4096) {
        self.maxDimension = maxDimension
        self.maxFrames = maxFrames
    }

    public static let `default` = IngestLimits()
}

/// One frame of a CT object in Hounsfield units, with the attributes that place it in the series.
public struct CTSlice: Sendable {
    public let header: CTHeader
    public let frame: Int
    public let attributes: FrameAttributes
    public let conversion: HounsfieldConversion
    public let image: HounsfieldImage
}

/// Opens a DICOM file and checks, before decoding anything, that it is a CT slice ichd should score;
/// then decodes frames one at a time (memory stays one frame deep for multi-frame objects).
public final class DicomSliceReader {
    public let header: CTHeader
    private let file: DicomFile

    public var frameCount: Int { header.numberOfFrames }

    public init(path: String, limits: IngestLimits = .default) throws(IngestRejection) {
        do {
            file = try DicomFile(path: path)
        } catch {
            switch error {
            case .notDicom(let why): throw .notDicom(why)
            case .truncated(let why): throw .truncated(why)
            case .unreadable(let why): throw .unreadable(why)
            }
        }
        header = try Self.validatedHeader(file, limits: limits)
    }

    public func frameAttributes(_ frame: Int) -> FrameAttributes {
        Self.frameAttributes(file, frame: frame)
    }

    /// Decodes `frame` (0-based) into Hounsfield units.
    public func readFrame(_ frame: Int) throws(IngestRejection) -> CTSlice {
        precondition(frame >= 0 && frame < frameCount, "frame \(frame) outside 0..<\(frameCount)")
        let attributes = frameAttributes(frame)
        try Self.checkAxial(attributes, frame: frame)
        guard attributes.rescaleSlope.isFinite, attributes.rescaleSlope != 0, attributes.rescaleIntercept.isFinite else {
            throw .invalidRescale("slope \(attributes.rescaleSlope), intercept \(attributes.rescaleIntercept)")
        }
        let conversion = HounsfieldConversion(
            slope: attributes.rescaleSlope, intercept: attributes.rescaleIntercept, signed: header.isSigned,
            bitsStored: header.bitsStored, highBit: header.highBit)
        let count = header.rows * header.columns
        let bytes = count * header.bitsAllocated / 8
        // One spare byte: DCMTK pads odd-sized frames to even length.
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes + 1, alignment: 16)
        defer { raw.deallocate() }
        if let failure = file.decodeFrame(frame, into: raw) {
            throw .decodeFailed(failure)
        }
        var pixels = [Float](repeating: 0, count: count)
        pixels.withUnsafeMutableBufferPointer { out in
            conversion.convert(samples: UnsafeRawBufferPointer(raw), bitsAllocated: header.bitsAllocated, count: count, into: out)
        }
        return CTSlice(
            header: header, frame: frame, attributes: attributes, conversion: conversion,
            image: HounsfieldImage(width: header.columns, height: header.rows, pixels: pixels))
    }

    // MARK: - Validation

    private static func validatedHeader(_ file: DicomFile, limits: IngestLimits) throws(IngestRejection) -> CTHeader {
        let sopClass = file.string(.sopClassUID) ?? ""
        let modality = file.string(.modality) ?? ""
        guard CTSOPClass.accepted.contains(sopClass) else {
            let said = modality.isEmpty ? "" : " with Modality \(modality)"
            throw .notCT(CTSOPClass.name(sopClass) + said)
        }
        guard modality == "CT" else {
            throw .notCT("CT SOP class but Modality is \(modality.isEmpty ? "missing" : modality)")
        }
        let imageType = file.values(.imageType) ?? []
        try checkImageType(imageType, sopClass: sopClass)

        guard let pixelInfo = file.pixelDataInfo else { throw .noPixelData }
        let transferSyntax = file.transferSyntaxUID
        guard TransferSyntax.supported[transferSyntax] != nil else {
            throw .unsupportedTransferSyntax(TransferSyntax.refusal(for: transferSyntax))
        }
        let photometric = file.string(.photometricInterpretation) ?? ""
        guard photometric == "MONOCHROME1" || photometric == "MONOCHROME2" else {
            throw .unsupportedPhotometricInterpretation(photometric.isEmpty ? "(missing)" : photometric)
        }
        let samplesPerPixel = file.int(.samplesPerPixel) ?? 1
        guard samplesPerPixel == 1 else {
            throw .unsupportedPhotometricInterpretation("\(photometric) with \(samplesPerPixel) samples per pixel")
        }

        guard let rows = file.int(.rows), let columns = file.int(.columns) else {
            throw .invalidDimensions("Rows or Columns missing")
        }
        guard (1...limits.maxDimension).contains(rows), (1...limits.maxDimension).contains(columns) else {
            throw .invalidDimensions("\(rows) x \(columns) pixels (accepted: 1 to \(limits.maxDimension) per side)")
        }
        let frames = file.int(.numberOfFrames) ?? 1
        guard (1...limits.maxFrames).contains(frames) else {
            throw .invalidDimensions("Number of Frames \(frames) (accepted: 1 to \(limits.maxFrames))")
        }
        let bitsAllocated = file.int(.bitsAllocated) ?? 0
        guard bitsAllocated == 8 || bitsAllocated == 16 else {
            throw .invalidDimensions("Bits Allocated \(bitsAllocated) (accepted: 8 or 16)")
        }
        let bitsStored = file.int(.bitsStored) ?? bitsAllocated
        let highBit = file.int(.highBit) ?? (bitsStored - 1)
        guard (1...bitsAllocated).contains(bitsStored), highBit >= bitsStored - 1, highBit < bitsAllocated else {
            throw .invalidDimensions("Bits Stored \(bitsStored) / High Bit \(highBit) with Bits Allocated \(bitsAllocated)")
        }
        let pixelRepresentation = file.int(.pixelRepresentation) ?? 0
        guard pixelRepresentation == 0 || pixelRepresentation == 1 else {
            throw .invalidDimensions("Pixel Representation \(pixelRepresentation)")
        }

        let expected = UInt64(rows) * UInt64(columns) * UInt64(frames) * UInt64(bitsAllocated / 8)
        if pixelInfo.encapsulated {
            guard pixelInfo.fragments > 0, pixelInfo.length > 0 else {
                throw .pixelDataLengthMismatch(expected: expected, actual: pixelInfo.length)
            }
        } else {
            // A native value of odd size is padded to even length, nothing more.
            guard pixelInfo.length == expected || pixelInfo.length == expected + (expected & 1) else {
                throw .pixelDataLengthMismatch(expected: expected, actual: pixelInfo.length)
            }
        }

        let first = frameAttributes(file, frame: 0)
        try checkAxial(first, frame: 0)
        let accession = file.string(.accessionNumber).flatMap { $0.isEmpty ? nil : Confidential($0) }
        return CTHeader(
            sopInstanceUID: file.string(.sopInstanceUID) ?? "",
            seriesInstanceUID: file.string(.seriesInstanceUID) ?? "",
            studyInstanceUID: file.string(.studyInstanceUID) ?? "",
            sopClassUID: sopClass, modality: modality, imageType: imageType,
            instanceNumber: file.int(.instanceNumber),
            rows: rows, columns: columns, bitsAllocated: bitsAllocated, bitsStored: bitsStored, highBit: highBit,
            pixelRepresentation: pixelRepresentation, samplesPerPixel: samplesPerPixel,
            photometricInterpretation: photometric, numberOfFrames: frames, transferSyntaxUID: transferSyntax,
            accessionNumber: accession, firstFrame: first)
    }

    /// DERIVED\PRIMARY\AXIAL (a reconstruction, a slice once stored lossy) is scored; SECONDARY, localizers and
    /// reformats/projections/renderings are not (`CTImageType`).
    private static func checkImageType(_ imageType: [String], sopClass: String) throws(IngestRejection) {
        if let why = CTImageType.refusal(imageType, enhanced: sopClass == CTSOPClass.enhancedCTImage) {
            throw .notOriginalAxial(why)
        }
    }

    /// Axial means the slice normal is within 45 degrees of the patient's z axis: gantry tilt (up to about
    /// 30 degrees) passes, sagittal and coronal planes do not.
    private static func checkAxial(_ attributes: FrameAttributes, frame: Int) throws(IngestRejection) {
        guard let normal = attributes.sliceNormal else { return }
        if abs(normal.z) < 0.5.squareRoot() {
            let o = attributes.imageOrientationPatient!.map { String(format3: $0) }.joined(separator: "\\")
            throw .notOriginalAxial("frame \(frame) is not axial (Image Orientation \(o))")
        }
    }

    private static func frameAttributes(_ file: DicomFile, frame: Int) -> FrameAttributes {
        FrameAttributes(
            imagePositionPatient: file.doubles(.imagePositionPatient, frame: frame, macro: .planePositionSequence),
            imageOrientationPatient: file.doubles(.imageOrientationPatient, frame: frame, macro: .planeOrientationSequence),
            pixelSpacing: file.doubles(.pixelSpacing, frame: frame, macro: .pixelMeasuresSequence),
            sliceThickness: file.doubles(.sliceThickness, frame: frame, macro: .pixelMeasuresSequence)?.first,
            rescaleSlope: file.doubles(.rescaleSlope, frame: frame, macro: .pixelValueTransformationSequence)?.first ?? 1,
            rescaleIntercept: file.doubles(.rescaleIntercept, frame: frame, macro: .pixelValueTransformationSequence)?.first ?? 0)
    }
}

extension String {
    /// A number with at most three decimals, for messages.
    init(format3 value: Double) {
        let rounded = (value * 1000).rounded() / 1000
        self = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
