import CZlib

/// Writes 8-bit grey or RGB images as PNG (plots and overlays, which JPEG would smear). Deflate and CRC-32
/// come from zlib; the container is the few fixed chunks of the PNG specification: signature, IHDR, one
/// IDAT, IEND. Scanlines use filter 0 (none): plots are mostly flat colour, which deflate handles well.
public enum PNGEncoder {
    public struct EncodeError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func encode(_ image: Image8) throws(EncodeError) -> [UInt8] {
        let colourType: UInt8 = image.channels == 1 ? 0 : 2  // grey or RGB (Image8 holds only these)
        guard image.width > 0, image.height > 0, image.width <= 1 << 16, image.height <= 1 << 16 else {
            throw EncodeError(description: "PNG: image size \(image.width)x\(image.height) out of range")
        }
        let row = image.width * image.channels
        var raw = [UInt8]()
        raw.reserveCapacity((row + 1) * image.height)
        for y in 0..<image.height {
            raw.append(0)
            raw.append(contentsOf: image.pixels[(y * row)..<((y + 1) * row)])
        }
        var compressedSize = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedSize))
        let status = compress2(&compressed, &compressedSize, raw, uLong(raw.count), 9)
        guard status == Z_OK else { throw EncodeError(description: "PNG: deflate failed (zlib status \(status))") }
        compressed.removeSubrange(Int(compressedSize)...)

        var header = [UInt8]()
        append32(UInt32(image.width), to: &header)
        append32(UInt32(image.height), to: &header)
        header += [8, colourType, 0, 0, 0]  // bit depth, colour type, deflate, adaptive filtering, no interlace
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        appendChunk("IHDR", header, to: &png)
        appendChunk("IDAT", compressed, to: &png)
        appendChunk("IEND", [], to: &png)
        return png
    }

    private static func append32(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    /// Length, type, data, CRC-32 over type and data.
    private static func appendChunk(_ type: String, _ data: [UInt8], to png: inout [UInt8]) {
        append32(UInt32(data.count), to: &png)
        let typeAndData = Array(type.utf8) + data
        png += typeAndData
        let crc = typeAndData.withUnsafeBufferPointer { crc32(crc32(0, nil, 0), $0.baseAddress, uInt($0.count)) }
        append32(UInt32(crc), to: &png)
    }
}
