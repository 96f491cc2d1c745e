/// A value that must never reach a log (accession numbers, anything tying a slice to a patient).
/// It prints as "<redacted>"; code that needs it (the serial alert) reads `value` on purpose.
public struct Confidential: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// The attributes of a CT object that ichd uses, read once when the file is opened.
/// Per-frame attributes (position, orientation, rescale) are in `FrameAttributes`.
public struct CTHeader: Sendable, Equatable {
    public var sopInstanceUID: String
    public var seriesInstanceUID: String
    public var studyInstanceUID: String
    public var sopClassUID: String
    public var modality: String
    public var imageType: [String]
    public var instanceNumber: Int?
    public var rows: Int
    public var columns: Int
    public var bitsAllocated: Int
    public var bitsStored: Int
    public var highBit: Int
    public var pixelRepresentation: Int
    public var samplesPerPixel: Int
    public var photometricInterpretation: String
    public var numberOfFrames: Int
    public var transferSyntaxUID: String
    /// Kept for the serial alert that names the study to the integrator's system; never logged.
    public var accessionNumber: Confidential?
    /// Frame 0's geometry and rescale (for single-frame files, the slice's).
    public var firstFrame: FrameAttributes

    public var isSigned: Bool { pixelRepresentation == 1 }
}

/// Attributes that enhanced multi-frame objects may give per frame (functional groups); classic single-frame
/// objects give them once at the top level.
public struct FrameAttributes: Sendable, Equatable {
    public var imagePositionPatient: [Double]?
    public var imageOrientationPatient: [Double]?
    public var pixelSpacing: [Double]?
    public var sliceThickness: Double?
    public var rescaleSlope: Double
    public var rescaleIntercept: Double

    /// Unit normal of the slice plane (row direction x column direction), when the orientation is valid.
    public var sliceNormal: (x: Double, y: Double, z: Double)? {
        guard let o = imageOrientationPatient, o.count == 6 else { return nil }
        let n = (x: o[1] * o[5] - o[2] * o[4], y: o[2] * o[3] - o[0] * o[5], z: o[0] * o[4] - o[1] * o[3])
        let length = (n.x * n.x + n.y * n.y + n.z * n.z).squareRoot()
        guard length > 1e-6 else { return nil }
        return (n.x / length, n.y / length, n.z / length)
    }

    /// Image Position (Patient) projected on the slice normal (mm): the slice's place in its series.
    public var positionAlongNormal: Double? {
        guard let p = imagePositionPatient, p.count == 3, let n = sliceNormal else { return nil }
        return p[0] * n.x + p[1] * n.y + p[2] * n.z
    }
}

public enum CTSOPClass {
    public static let ctImage = "1.2.840.10008.5.1.4.1.1.2"
    public static let enhancedCTImage = "1.2.840.10008.5.1.4.1.1.2.1"
    public static let accepted: Set<String> = [ctImage, enhancedCTImage]

    /// Names of the SOP classes a CT drop folder commonly receives by mistake, for rejection messages.
    static let names: [String: String] = [
        "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
        "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
        "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
        "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
        "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage",
        "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
        "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image Storage",
        "1.2.840.10008.5.1.4.1.1.128": "PET Image Storage",
        "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
        "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
        "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
        "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
        "1.2.840.10008.5.1.4.1.1.481.1": "RT Image Storage",
        "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose Storage",
        "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
        "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan Storage",
        "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
        "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    ]

    static func name(_ uid: String) -> String {
        if uid.isEmpty { return "no SOP Class UID" }
        return names[uid].map { "\($0) (\(uid))" } ?? "SOP class \(uid)"
    }
}
