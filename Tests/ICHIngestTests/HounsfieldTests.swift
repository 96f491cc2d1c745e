import Foundation
import ICHIngest
import ICHPhantom
import ICHTestSupport
import Testing

@Suite struct HounsfieldTests {
    let dir = TemporaryDirectory()

    @Test func exactValuesOnHandBuiltSamples() {
        let signed12 = HounsfieldConversion(slope: 1, intercept: -1024, signed: true, bitsStored: 12, highBit: 11)
        #expect(signed12.hounsfield(sample: 0x0000) == -1024)
        #expect(signed12.hounsfield(sample: 0x07FF) == 2047 - 1024)
        #expect(signed12.hounsfield(sample: 0x0800) == -2048 - 1024)  // sign bit of 12
        #expect(signed12.hounsfield(sample: 0xFFFF) == -1 - 1024)      // bits above High Bit ignored
        #expect(signed12.hounsfield(sample: 0xF001) == 1 - 1024)

        let unsigned16 = HounsfieldConversion(slope: 0.5, intercept: -1000, signed: false, bitsStored: 16, highBit: 15)
        #expect(!unsigned16.wrapFixApplied)
        #expect(unsigned16.hounsfield(sample: 0xFFFF) == 65535 * 0.5 - 1000)

        // High Bit 15 with 12 bits stored: the value sits in the top bits.
        let shifted = HounsfieldConversion(slope: 1, intercept: 0, signed: true, bitsStored: 12, highBit: 15)
        #expect(shifted.storedValue(sample: 0xFFF0) == -1)
        #expect(shifted.storedValue(sample: 0x0010) == 1)
    }

    @Test func rsnaWrapFix() {
        let wrapped = HounsfieldConversion(slope: 1, intercept: 1, signed: false, bitsStored: 12, highBit: 11)
        #expect(wrapped.wrapFixApplied)
        #expect(wrapped.intercept == -1000)
        #expect(wrapped.hounsfield(sample: 3096) == -1000)  // air: 3096 + 1000 - 4096 = 0
        #expect(wrapped.hounsfield(sample: 40) == 40)       // brain: 40 + 1000 = 1040
        #expect(wrapped.hounsfield(sample: 3095) == 3095 + 1000 - 1000)  // below the wrap, unchanged
        #expect(wrapped.hounsfield(sample: 4095) == -1)

        // Not applied: signed data, a proper intercept, or 16 stored bits (no 4096 wrap to undo).
        #expect(!HounsfieldConversion(slope: 1, intercept: 1, signed: true, bitsStored: 12, highBit: 11).wrapFixApplied)
        #expect(!HounsfieldConversion(slope: 1, intercept: -1024, signed: false, bitsStored: 12, highBit: 11).wrapFixApplied)
        #expect(!HounsfieldConversion(slope: 1, intercept: -100, signed: false, bitsStored: 12, highBit: 11).wrapFixApplied)
        #expect(HounsfieldConversion(slope: 1, intercept: -99, signed: false, bitsStored: 12, highBit: 11).wrapFixApplied)
        #expect(!HounsfieldConversion(slope: 1, intercept: 0, signed: false, bitsStored: 16, highBit: 15).wrapFixApplied)
    }

    @Test(arguments: [TransferSyntax.explicitLittleEndian, TransferSyntax.rleLossless])
    func wrappedFileReadsAsTrueHounsfield(_ syntax: String) throws {
        let image = Fixtures.head(size: 48, bleed: true)
        var storage = CTStorage.rsnaWrappedUnsigned12
        storage.transferSyntax = syntax
        let path = try Fixtures.writeSlice(image, to: dir.file("wrapped.dcm"), storage: storage)
        let slice = try DicomSliceReader(path: path).readFrame(0)
        #expect(slice.conversion.wrapFixApplied)
        // The stored form puts air near 3096; after the fix every value is the phantom's (air clamps at -1000).
        #expect(slice.image.pixels == image.pixels.map { max($0, -1000) })
    }

    @Test func signedAndUnsignedStorageAgree() throws {
        let image = Fixtures.head(size: 40)
        let variants = [
            CTStorage(bitsStored: 16, signed: true, rescaleIntercept: -1024),
            CTStorage(bitsStored: 12, signed: true, rescaleIntercept: 0),
            CTStorage(bitsStored: 12, signed: false, rescaleIntercept: -1024),
            CTStorage(bitsStored: 16, signed: false, rescaleSlope: 0.5, rescaleIntercept: -2048),
        ]
        for (i, storage) in variants.enumerated() {
            let path = try Fixtures.writeSlice(image, to: dir.file("v\(i).dcm"), storage: storage)
            let slice = try DicomSliceReader(path: path).readFrame(0)
            #expect(slice.image.pixels == image.pixels, "variant \(i)")
        }
    }

    /// Some routers re-encode attributes as UN in explicit VR files; their values must still be read.
    @Test func attributesStoredAsUnknownVR() throws {
        let image = Fixtures.head(size: 32)
        let path = try Fixtures.writeSlice(image, to: dir.file("un.dcm"), storage: CTStorage(rescaleIntercept: -1024)) {
            try $0.setUnknownVR(.rescaleIntercept, bytes: Array("-1024 ".utf8))
            try $0.setUnknownVR(.rows, bytes: [32, 0])
            try $0.setUnknownVR(.modality, bytes: Array("CT".utf8))
        }
        let reader = try DicomSliceReader(path: path)
        #expect(reader.header.rows == 32)
        #expect(reader.header.firstFrame.rescaleIntercept == -1024)
        #expect(try reader.readFrame(0).image.pixels == image.pixels)
    }

    /// Enhanced CT: frames share rescale through the Shared Functional Groups, positions come per frame,
    /// and a per-frame rescale overrides the shared one.
    @Test(arguments: [TransferSyntax.explicitLittleEndian, TransferSyntax.rleLossless, TransferSyntax.jpegLSLossless])
    func enhancedMultiFrame(_ syntax: String) throws {
        let frames = (0..<3).map { Fixtures.head(size: 32, seed: UInt64(10 + $0)) }
        let storage = CTStorage(rescaleIntercept: -1024)
        let writer = try CTSliceWriter.makeWriter(image: frames[0], identity: Fixtures.identity(), storage: storage)
        try writer.set("SOPClassUID", CTSOPClass.enhancedCTImage)
        try writer.set("NumberOfFrames", "3")
        for tag in ["RescaleIntercept", "RescaleSlope", "ImagePositionPatient", "ImageOrientationPatient"] { try writer.remove(tag) }
        let shared = "(5200,9229)[0]."
        try writer.set(shared + "(0028,9145)[0].RescaleIntercept", "-1024")
        try writer.set(shared + "(0028,9145)[0].RescaleSlope", "1")
        try writer.set(shared + "(0020,9116)[0].ImageOrientationPatient", "1\\0\\0\\0\\1\\0")
        for f in 0..<3 {
            try writer.set("(5200,9230)[\(f)].(0020,9113)[0].ImagePositionPatient", "-100\\-100\\\(5 * f)")
        }
        try writer.set("(5200,9230)[2].(0028,9145)[0].RescaleIntercept", "-1000")
        try writer.set("(5200,9230)[2].(0028,9145)[0].RescaleSlope", "1")
        let stored = frames.flatMap { $0.pixels.map { UInt16(bitPattern: Int16(storage.storedValue(hounsfield: $0))) } }
        try writer.setPixelData16(stored)
        let path = dir.file("enhanced.dcm")
        try writer.write(to: path, transferSyntax: syntax)

        let reader = try DicomSliceReader(path: path)
        #expect(reader.frameCount == 3)
        for f in 0..<3 {
            let slice = try reader.readFrame(f)
            #expect(slice.attributes.imagePositionPatient == [-100, -100, Double(5 * f)])
            let offset: Float = f == 2 ? 24 : 0  // frame 2 decodes with intercept -1000 instead of -1024
            #expect(slice.image.pixels == frames[f].pixels.map { $0 + offset }, "frame \(f)")
        }
    }
}
