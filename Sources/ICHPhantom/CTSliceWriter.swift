import ICHIngest

/// How a slice's Hounsfield values are stored: the variants scanners actually send.
public struct CTStorage: Sendable, Equatable {
    public var bitsAllocated: Int = 16
    public var bitsStored: Int = 16
    public var signed: Bool = true
    public var rescaleSlope: Double = 1
    public var rescaleIntercept: Double = -1024
    /// Store the way the RSNA 2019 scanners did: unsigned 12-bit, intercept above -100, values wrapped at 4096
    /// (air near 3096). `HounsfieldConversion` undoes it; `rescaleIntercept` is written as is (use e.g. 0 or 1).
    public var rsnaWrapped: Bool = false
    public var transferSyntax: String = TransferSyntax.explicitLittleEndian
    public var withMetaHeader: Bool = true

    public init(bitsAllocated: Int = 16, bitsStored: Int = 16, signed: Bool = true, rescaleSlope: Double = 1,
                rescaleIntercept: Double = -1024, rsnaWrapped: Bool = false,
                transferSyntax: String = TransferSyntax.explicitLittleEndian, withMetaHeader: Bool = true) {
        self.bitsAllocated = bitsAllocated
        self.bitsStored = bitsStored
        self.signed = signed
        self.rescaleSlope = rescaleSlope
        self.rescaleIntercept = rescaleIntercept
        self.rsnaWrapped = rsnaWrapped
        self.transferSyntax = transferSyntax
        self.withMetaHeader = withMetaHeader
    }

    /// The RSNA gotcha as stored: unsigned 12 of 16 bits, intercept 0, wrapped.
    public static let rsnaWrappedUnsigned12 = CTStorage(bitsStored: 12, signed: false, rescaleIntercept: 0, rsnaWrapped: true)

    /// Stored value for a Hounsfield value, clamped to what the storage can represent.
    public func storedValue(hounsfield: Float) -> Int {
        if rsnaWrapped {
            let fixed = max(0, min(4095, Int(((Double(hounsfield) + 1000) / rescaleSlope).rounded())))
            return (fixed - 1000 + 4096) % 4096
        }
        let value = Int(((Double(hounsfield) - rescaleIntercept) / rescaleSlope).rounded())
        let range = signed ? -(1 << (bitsStored - 1))...((1 << (bitsStored - 1)) - 1) : 0...((1 << bitsStored) - 1)
        return max(range.lowerBound, min(range.upperBound, value))
    }
}

/// Where a slice sits and whose it is. The identity fields are synthetic; phantoms never carry real people.
public struct CTSliceIdentity: Sendable, Equatable {
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
    public var instanceNumber: Int = 1
    public var imagePositionPatient: [Double] = [-125, -125, 0]
    public var imageOrientationPatient: [Double] = [1, 0, 0, 0, 1, 0]
    public var pixelSpacing: [Double] = [0.488, 0.488]
    public var sliceThickness: Double = 5
    public var imageType: String = "ORIGINAL\\PRIMARY\\AXIAL"
    public var accessionNumber: String = "PHANTOM0001"
    public var patientName: String = "Phantom^Synthetic"
    public var patientID: String = "PHANTOM-0001"

    public init(studyInstanceUID: String, seriesInstanceUID: String, sopInstanceUID: String, instanceNumber: Int = 1) {
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sopInstanceUID = sopInstanceUID
        self.instanceNumber = instanceNumber
    }
}

/// Writes a Hounsfield image as a CT Image Storage object through DCMTK.
public enum CTSliceWriter {
    /// The attributes of a CT slice, ready to write or to alter before writing (tests build broken files so).
    public static func makeWriter(image: HounsfieldImage, identity: CTSliceIdentity,
                                  storage: CTStorage) throws(DicomWriter.WriteError) -> DicomWriter {
        let writer = DicomWriter()
        func d(_ values: [Double]) -> String { values.map { String($0) }.joined(separator: "\\") }
        let attributes: [(String, String)] = [
            ("SOPClassUID", CTSOPClass.ctImage),
            ("SOPInstanceUID", identity.sopInstanceUID),
            ("StudyInstanceUID", identity.studyInstanceUID),
            ("SeriesInstanceUID", identity.seriesInstanceUID),
            ("Modality", "CT"),
            ("ImageType", identity.imageType),
            ("AccessionNumber", identity.accessionNumber),
            ("PatientName", identity.patientName),
            ("PatientID", identity.patientID),
            ("BodyPartExamined", "HEAD"),
            ("InstanceNumber", String(identity.instanceNumber)),
            ("ImagePositionPatient", d(identity.imagePositionPatient)),
            ("ImageOrientationPatient", d(identity.imageOrientationPatient)),
            ("PixelSpacing", d(identity.pixelSpacing)),
            ("SliceThickness", String(identity.sliceThickness)),
            ("SamplesPerPixel", "1"),
            ("PhotometricInterpretation", "MONOCHROME2"),
            ("Rows", String(image.height)),
            ("Columns", String(image.width)),
            ("BitsAllocated", String(storage.bitsAllocated)),
            ("BitsStored", String(storage.bitsStored)),
            ("HighBit", String(storage.bitsStored - 1)),
            ("PixelRepresentation", storage.signed ? "1" : "0"),
            ("RescaleIntercept", String(storage.rescaleIntercept)),
            ("RescaleSlope", String(storage.rescaleSlope)),
            ("RescaleType", "HU"),
            ("WindowCenter", "40"),
            ("WindowWidth", "80"),
        ]
        for (path, value) in attributes { try writer.set(path, value) }
        let stored = image.pixels.map { storage.storedValue(hounsfield: $0) }
        if storage.bitsAllocated == 16 {
            try writer.setPixelData16(stored.map { UInt16(truncatingIfNeeded: $0) })
        } else {
            try writer.setPixelData8(stored.map { UInt8(truncatingIfNeeded: $0) })
        }
        return writer
    }

    public static func write(image: HounsfieldImage, identity: CTSliceIdentity, storage: CTStorage,
                             to path: String) throws(DicomWriter.WriteError) {
        let writer = try makeWriter(image: image, identity: identity, storage: storage)
        try writer.write(to: path, transferSyntax: storage.transferSyntax, withMetaHeader: storage.withMetaHeader)
    }
}
