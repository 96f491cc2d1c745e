/// Why a file is not scored. Each case has a stable `code` (for quarantine reason files, JSON and metrics)
/// and a `message` that names the cause in words a technician or integrator can act on.
/// Messages never contain patient-identifying values.
public enum IngestRejection: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened or read at all (permissions, vanished, I/O error).
    case unreadable(String)
    /// Neither DICOM nor JPEG.
    case notDicom(String)
    /// The file ends inside an element: a partial transfer or a damaged file.
    case truncated(String)
    /// Not a CT image object: another modality, a report, an RT object, a Secondary Capture that only says CT.
    case notCT(String)
    /// A CT image, but not an axial slice of the scan: a localizer/scout, a secondary image, a reformat,
    /// projection or rendering, or a non-axial plane. (The code keeps its first name; DERIVED\PRIMARY\AXIAL
    /// reconstructions are scored.)
    case notOriginalAxial(String)
    case noPixelData
    case unsupportedPhotometricInterpretation(String)
    case unsupportedTransferSyntax(String)
    /// Zero, absurd or inconsistent image dimensions or bit depths, found before any decoding.
    case invalidDimensions(String)
    /// Rescale Slope/Intercept that cannot map stored values to Hounsfield units (zero or not a number).
    case invalidRescale(String)
    /// Pixel Data's length disagrees with Rows x Columns x frames x bits.
    case pixelDataLengthMismatch(expected: UInt64, actual: UInt64)
    /// The codec failed on the pixel data.
    case decodeFailed(String)
    /// A JPEG ichd does not take (12-bit, lossless, CMYK, ...).
    case unsupportedJPEG(String)
    /// A JPEG that libjpeg-turbo decodes only with warnings (truncated, corrupt).
    case corruptJPEG(String)
    /// An RGB JPEG with real colour (a photo, a screenshot, a colour overlay): its channels are not greyscale or
    /// windows of one greyscale image (`ChannelAgreement`).
    case colourJPEG(String)

    public var code: String {
        switch self {
        case .unreadable: "unreadable"
        case .notDicom: "not_dicom"
        case .truncated: "truncated"
        case .notCT: "not_ct"
        case .notOriginalAxial: "not_original_axial"
        case .noPixelData: "no_pixel_data"
        case .unsupportedPhotometricInterpretation: "unsupported_photometric_interpretation"
        case .unsupportedTransferSyntax: "unsupported_transfer_syntax"
        case .invalidDimensions: "invalid_dimensions"
        case .invalidRescale: "invalid_rescale"
        case .pixelDataLengthMismatch: "pixel_data_length_mismatch"
        case .decodeFailed: "decode_failed"
        case .unsupportedJPEG: "unsupported_jpeg"
        case .corruptJPEG: "corrupt_jpeg"
        case .colourJPEG: "colour_jpeg"
        }
    }

    public var message: String {
        switch self {
        case .unreadable(let why): "cannot read the file: \(why)"
        case .notDicom(let why): "not a DICOM file: \(why)"
        case .truncated(let why): "truncated DICOM file: \(why)"
        case .notCT(let why): "not a CT image: \(why)"
        case .notOriginalAxial(let why): "not an axial CT slice of the scan: \(why)"
        case .noPixelData: "the DICOM object has no Pixel Data"
        case .unsupportedPhotometricInterpretation(let what):
            "unsupported Photometric Interpretation \(what) (CT slices are MONOCHROME1 or MONOCHROME2)"
        case .unsupportedTransferSyntax(let why): "unsupported transfer syntax: \(why)"
        case .invalidDimensions(let why): "invalid image dimensions: \(why)"
        case .invalidRescale(let why): "invalid Rescale Slope/Intercept: \(why)"
        case .pixelDataLengthMismatch(let expected, let actual):
            "Pixel Data holds \(actual) bytes but Rows x Columns x frames x bits need \(expected)"
        case .decodeFailed(let why): "pixel data could not be decoded: \(why)"
        case .unsupportedJPEG(let why): "unsupported JPEG: \(why)"
        case .corruptJPEG(let why): "corrupt or truncated JPEG: \(why)"
        case .colourJPEG(let why):
            "colour JPEG, not a CT slice (slices are greyscale, or RGB whose channels are windows of the same slice): \(why)"
        }
    }

    public var description: String { "\(code): \(message)" }
}
