import CTurboJPEG

/// An 8-bit image as JPEG carries it: row-major, `channels` interleaved samples per pixel (1 grey, 3 RGB).
public struct Image8: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3)
        precondition(pixels.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// JPEG through libjpeg-turbo's TurboJPEG API, for slices in the research project's preprocessed format and
/// for previews. Decoding is strict: libjpeg-turbo merely warns about a truncated or corrupt stream and pads
/// the image with grey, so any warning is an error here.
public enum JPEGCodec {
    /// Largest width or height decoded; bounds memory the same way DICOM ingest does.
    public static let maxDimension = 8192

    public static func decode(_ data: [UInt8]) throws(IngestRejection) -> Image8 {
        guard let handle = tjInitDecompress() else { throw .unreadable("libturbojpeg could not start a decoder") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = data.withUnsafeBufferPointer { buf in
            tjDecompressHeader3(handle, buf.baseAddress, UInt(buf.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw rejection(handle, data) }
        guard width > 0, height > 0, width <= maxDimension, height <= maxDimension else {
            throw .invalidDimensions("JPEG of \(width) x \(height) pixels (accepted: 1 to \(maxDimension) per side)")
        }
        let channels: Int
        let format: TJPF
        switch Int(colorspace) {
        case Int(TJCS_GRAY.rawValue): (channels, format) = (1, TJPF_GRAY)
        case Int(TJCS_RGB.rawValue), Int(TJCS_YCbCr.rawValue): (channels, format) = (3, TJPF_RGB)
        default: throw .unsupportedJPEG("CMYK/YCCK colour space (slices are grayscale or RGB)")
        }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * channels)
        let status = data.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, width, 0, height,
                              format.rawValue, TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT)
            }
        }
        // TJFLAG_STOPONWARNING turns libjpeg's warnings (premature end of data, corrupt data) into failures.
        guard status == 0 else { throw rejection(handle, data) }
        return Image8(width: Int(width), height: Int(height), channels: channels, pixels: pixels)
    }

    /// Chroma sampling of an RGB encoding. ichd writes 4:4:4; 4:2:0 is what most other tools write by default
    /// (Pillow, libjpeg's cjpeg), so tests write it too.
    public enum ChromaSampling: Sendable {
        case full, half
    }

    /// Encodes grey or RGB pixels; quality 1...100. 4:4:4 by default so the three window channels keep full
    /// resolution.
    public static func encode(_ image: Image8, quality: Int = 92, chroma: ChromaSampling = .full) throws(IngestRejection) -> [UInt8] {
        guard let handle = tjInitCompress() else { throw .unreadable("libturbojpeg could not start an encoder") }
        defer { tjDestroy(handle) }
        var output: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let format = image.channels == 1 ? TJPF_GRAY : TJPF_RGB
        let subsampling = image.channels == 1 ? TJSAMP_GRAY : chroma == .full ? TJSAMP_444 : TJSAMP_420
        let status = image.pixels.withUnsafeBufferPointer { src in
            tjCompress2(handle, src.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(format.rawValue),
                        &output, &size, Int32(subsampling.rawValue), Int32(max(1, min(100, quality))), TJFLAG_ACCURATEDCT)
        }
        defer { if let output { tjFree(output) } }
        guard status == 0, let output else {
            throw .decodeFailed("JPEG encoding failed: " + errorText(handle))
        }
        return Array(UnsafeBufferPointer(start: output, count: Int(size)))
    }

    private static func errorText(_ handle: tjhandle) -> String {
        tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown libjpeg-turbo error"
    }

    /// Names the reason in words: libjpeg's messages for the formats an 8-bit build refuses are terse.
    private static func rejection(_ handle: tjhandle, _ data: [UInt8]) -> IngestRejection {
        let text = errorText(handle)
        if data.count < 3 || data[0] != 0xFF || data[1] != 0xD8 {
            return .corruptJPEG("no JPEG start-of-image marker (\(text))")
        }
        if text.contains("precision") {
            return .unsupportedJPEG("12- or 16-bit JPEG (\(text)); slices must be 8-bit")
        }
        if text.contains("0xc3") || text.contains("0xc7") || text.contains("0xcb") || text.contains("0xcf") || text.contains("lossless") {
            return .unsupportedJPEG("lossless JPEG (\(text)); slices must be 8-bit baseline or progressive")
        }
        if text.contains("arithmetic") {
            return .unsupportedJPEG("arithmetic-coded JPEG (\(text))")
        }
        return .corruptJPEG(text)
    }
}
