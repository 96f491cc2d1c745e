/// The transfer syntaxes ichd decodes, and the words it uses for the ones it refuses.
public enum TransferSyntax {
    public static let implicitLittleEndian = "1.2.840.10008.1.2"
    public static let explicitLittleEndian = "1.2.840.10008.1.2.1"
    public static let deflatedExplicitLittleEndian = "1.2.840.10008.1.2.1.99"
    public static let explicitBigEndian = "1.2.840.10008.1.2.2"
    public static let jpegBaseline = "1.2.840.10008.1.2.4.50"
    public static let jpegExtended = "1.2.840.10008.1.2.4.51"
    public static let jpegLossless = "1.2.840.10008.1.2.4.57"
    public static let jpegLosslessSV1 = "1.2.840.10008.1.2.4.70"
    public static let jpegLSLossless = "1.2.840.10008.1.2.4.80"
    public static let jpegLSNearLossless = "1.2.840.10008.1.2.4.81"
    public static let rleLossless = "1.2.840.10008.1.2.5"

    /// Every syntax DCMTK (as Debian builds it) decodes, with a short name for reports.
    public static let supported: [String: String] = [
        implicitLittleEndian: "implicit VR little endian",
        explicitLittleEndian: "explicit VR little endian",
        deflatedExplicitLittleEndian: "deflated explicit VR little endian",
        explicitBigEndian: "explicit VR big endian",
        jpegBaseline: "JPEG baseline",
        jpegExtended: "JPEG extended (12-bit)",
        jpegLossless: "JPEG lossless",
        jpegLosslessSV1: "JPEG lossless SV1",
        jpegLSLossless: "JPEG-LS lossless",
        jpegLSNearLossless: "JPEG-LS near-lossless",
        rleLossless: "RLE lossless",
    ]

    /// Why a syntax outside `supported` is refused, in words an integrator can act on.
    public static func refusal(for uid: String) -> String {
        if uid.hasPrefix("1.2.840.10008.1.2.4.9") || uid.hasPrefix("1.2.840.10008.1.2.4.20") {
            return "JPEG 2000 / HTJ2K (\(uid)): Debian's DCMTK has no JPEG 2000 decoder; "
                + "configure the sender to send uncompressed, JPEG lossless, JPEG-LS or RLE"
        }
        if uid.hasPrefix("1.2.840.10008.1.2.4.10") || uid.hasPrefix("1.2.840.10008.1.2.4.11") {
            return "video transfer syntax (\(uid)) is not a CT slice encoding"
        }
        if uid.isEmpty { return "no transfer syntax recorded" }
        return "transfer syntax \(uid) has no decoder in this build"
    }
}
