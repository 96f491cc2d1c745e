import ICHIngest
import ICHPhantom
import ICHTestSupport
import Testing

/// Every transfer syntax ichd accepts, written by DCMTK's encoders and read back through the reader.
@Suite struct TransferSyntaxTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var syntax: String
        var storage: CTStorage
        /// Mean absolute HU error allowed (0 for lossless: every pixel exact).
        var tolerance: Float
        var testDescription: String { "\(TransferSyntax.supported[syntax] ?? syntax), \(storage.bitsStored)-bit \(storage.signed ? "signed" : "unsigned")" }
    }

    static let cases: [Case] = {
        var cases: [Case] = []
        let lossless = [TransferSyntax.implicitLittleEndian, TransferSyntax.explicitLittleEndian, TransferSyntax.explicitBigEndian,
                        TransferSyntax.deflatedExplicitLittleEndian, TransferSyntax.jpegLossless, TransferSyntax.jpegLosslessSV1,
                        TransferSyntax.jpegLSLossless, TransferSyntax.rleLossless]
        for syntax in lossless {
            cases.append(Case(syntax: syntax, storage: CTStorage(transferSyntax: syntax), tolerance: 0))
            cases.append(Case(syntax: syntax, storage: CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024, transferSyntax: syntax), tolerance: 0))
        }
        // Lossy codecs: baseline JPEG carries 8-bit samples (DCMTK rescales to 16 HU steps and the 1400 HU skull
        // edges ring in a 48-pixel image), extended JPEG 12-bit, JPEG-LS near-lossless +-2.
        cases.append(Case(syntax: TransferSyntax.jpegBaseline,
                          storage: CTStorage(bitsAllocated: 8, bitsStored: 8, signed: false, rescaleSlope: 10, rescaleIntercept: -1024,
                                             transferSyntax: TransferSyntax.jpegBaseline), tolerance: 40))
        cases.append(Case(syntax: TransferSyntax.jpegExtended,
                          storage: CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024, transferSyntax: TransferSyntax.jpegExtended),
                          tolerance: 15))
        cases.append(Case(syntax: TransferSyntax.jpegLSNearLossless,
                          storage: CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024,
                                             transferSyntax: TransferSyntax.jpegLSNearLossless), tolerance: 2))
        return cases
    }()

    @Test(arguments: cases)
    func roundTrip(_ c: Case) throws {
        let dir = TemporaryDirectory()
        let image = Fixtures.head(size: 160)
        let path = try Fixtures.writeSlice(image, to: dir.file("slice.dcm"), storage: c.storage)
        let reader = try DicomSliceReader(path: path)
        #expect(reader.header.transferSyntaxUID == c.syntax)
        #expect(reader.header.rows == 160 && reader.header.columns == 160)
        let slice = try reader.readFrame(0)
        let expected = image.pixels.map { Float(c.storage.storedValue(hounsfield: $0)) * Float(c.storage.rescaleSlope) + Float(c.storage.rescaleIntercept) }
        // Lossy encoders may rewrite Rescale Slope/Intercept (DCMTK's baseline encoder rescales to 8 bits),
        // so lossy results are compared with the true HU, lossless ones with the exact stored values.
        let errors = zip(slice.image.pixels, c.tolerance == 0 ? expected : image.pixels).map { abs($0 - $1) }
        let mean = errors.reduce(0, +) / Float(errors.count)
        if c.tolerance == 0 {
            #expect(errors.max() == 0, "lossless syntax changed values")
        } else {
            #expect(mean <= c.tolerance, "mean HU error \(mean)")
            #expect(mean > 0, "a lossy codec that changes nothing was not exercised")
        }
    }

    @Test func bareDatasetWithoutMetaHeader() throws {
        let dir = TemporaryDirectory()
        let image = Fixtures.head(size: 32)
        for syntax in [TransferSyntax.implicitLittleEndian, TransferSyntax.explicitLittleEndian] {
            let path = try Fixtures.writeSlice(image, to: dir.file("bare.dcm"), storage: CTStorage(transferSyntax: syntax, withMetaHeader: false))
            let slice = try DicomSliceReader(path: path).readFrame(0)
            #expect(slice.image.pixels == image.pixels)
        }
    }
}
