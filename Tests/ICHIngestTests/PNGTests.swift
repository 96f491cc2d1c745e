import CZlib
import ICHIngest
import Testing

@Suite struct PNGTests {
    /// Splits a PNG into chunks, checking the signature and every CRC on the way.
    static func chunks(_ png: [UInt8]) throws -> [(type: String, data: [UInt8])] {
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        var out: [(String, [UInt8])] = [], at = 8
        func u32(_ i: Int) -> Int { Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3]) }
        while at < png.count {
            let length = u32(at)
            let typeAndData = Array(png[(at + 4)..<(at + 8 + length)])
            let crc = typeAndData.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            #expect(Int(crc) == u32(at + 8 + length), "CRC of chunk at \(at)")
            out.append((String(decoding: typeAndData[0..<4], as: UTF8.self), Array(typeAndData[4...])))
            at += 12 + length
        }
        return out
    }

    @Test(arguments: [1, 3]) func roundTripsThroughZlib(channels: Int) throws {
        let width = 37, height = 11
        let pixels = (0..<(width * height * channels)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 13) }
        let png = try PNGEncoder.encode(Image8(width: width, height: height, channels: channels, pixels: pixels))
        let parts = try Self.chunks(png)
        #expect(parts.map(\.type) == ["IHDR", "IDAT", "IEND"])
        #expect(parts[0].data == [0, 0, 0, 37, 0, 0, 0, 11, 8, channels == 1 ? 0 : 2, 0, 0, 0])
        var size = uLong((width * channels + 1) * height)
        var raw = [UInt8](repeating: 0, count: Int(size))
        #expect(uncompress(&raw, &size, parts[1].data, uLong(parts[1].data.count)) == Z_OK)
        #expect(Int(size) == raw.count)
        let row = width * channels
        for y in 0..<height {
            #expect(raw[y * (row + 1)] == 0, "filter type of row \(y)")
            #expect(Array(raw[(y * (row + 1) + 1)..<((y + 1) * (row + 1))]) == Array(pixels[(y * row)..<((y + 1) * row)]))
        }
    }
}
