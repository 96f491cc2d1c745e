import Foundation
import ICHIngest
import ICHTestSupport
import Testing

@Suite struct JPEGTests {
    let dir = TemporaryDirectory()

    static func gradient(channels: Int, size: Int = 64) -> Image8 {
        var pixels = [UInt8]()
        for y in 0..<size {
            for x in 0..<size {
                for c in 0..<channels { pixels.append(UInt8((x * 3 + y * (c + 1) * 2) % 256)) }
            }
        }
        return Image8(width: size, height: size, channels: channels, pixels: pixels)
    }

    /// Channels that are one monotone ramp each (as window channels are), so the slice reader takes the RGB one.
    static func ramps(channels: Int, size: Int = 64) -> Image8 {
        var pixels = [UInt8]()
        for y in 0..<size {
            for x in 0..<size {
                for c in 0..<channels { pixels.append(UInt8(min(255, (x + y) * (c + 2)))) }
            }
        }
        return Image8(width: size, height: size, channels: channels, pixels: pixels)
    }

    @Test(arguments: [1, 3])
    func roundTripThroughFiles(_ channels: Int) throws {
        let image = Self.ramps(channels: channels)
        let bytes = try JPEGCodec.encode(image, quality: 95)
        let path = dir.file("slice.jpg")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        guard case .jpeg(let decoded) = try SliceFile.open(path: path) else {
            Issue.record("a JPEG opened as DICOM")
            return
        }
        #expect(decoded.width == 64 && decoded.height == 64 && decoded.channels == channels)
        let meanError = zip(decoded.pixels, image.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / image.pixels.count
        #expect(meanError <= 2)
    }

    @Test func truncatedJPEGIsAnErrorNotGreyPadding() throws {
        let bytes = try JPEGCodec.encode(Self.gradient(channels: 3), quality: 90)
        for keep in [bytes.count - 2, bytes.count * 2 / 3, 200] {
            #expect {
                _ = try JPEGCodec.decode(Array(bytes.prefix(keep)))
            } throws: { ($0 as? IngestRejection)?.code == "corrupt_jpeg" }
        }
    }

    @Test func corruptEntropyDataIsAnError() throws {
        var bytes = try JPEGCodec.encode(Self.gradient(channels: 1), quality: 90)
        // Overwrite part of the scan with a restart marker it does not expect.
        let start = bytes.count / 2
        for i in start..<(start + 16) { bytes[i] = i % 2 == 0 ? 0xFF : 0xD3 }
        #expect(throws: IngestRejection.self) { _ = try JPEGCodec.decode(bytes) }
    }

    /// Locates the frame header (SOF0) of an encoded baseline JPEG.
    static func sofOffset(_ bytes: [UInt8]) -> Int? {
        (0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 }
    }

    @Test func twelveBitJPEGIsRefusedWithReason() throws {
        var bytes = try JPEGCodec.encode(Self.gradient(channels: 1), quality: 90)
        let sof = try #require(Self.sofOffset(bytes))
        bytes[sof + 1] = 0xC1    // extended sequential
        bytes[sof + 4] = 12      // sample precision
        do {
            _ = try JPEGCodec.decode(bytes)
            Issue.record("12-bit JPEG accepted")
        } catch {
            #expect(error.code == "unsupported_jpeg")
            #expect(error.message.contains("12"))
        }
    }

    @Test func losslessJPEGIsRefusedWithReason() throws {
        var bytes = try JPEGCodec.encode(Self.gradient(channels: 1), quality: 90)
        let sof = try #require(Self.sofOffset(bytes))
        bytes[sof + 1] = 0xC3    // lossless (process 14)
        do {
            _ = try JPEGCodec.decode(bytes)
            Issue.record("lossless JPEG accepted")
        } catch {
            #expect(error.code == "unsupported_jpeg")
            #expect(error.message.contains("lossless"))
        }
    }
}
