import Foundation
import ICHIngest
import ICHPhantom
import ICHTestSupport
import Testing

/// Each rejection reason, produced by a file built for it; none may crash or decode pixels first.
@Suite struct RejectionTests {
    let dir = TemporaryDirectory()

    func rejection(_ path: String) -> IngestRejection? {
        do {
            let reader = try DicomSliceReader(path: path)
            _ = try reader.readFrame(0)
            return nil
        } catch {
            return error
        }
    }

    func fixture(_ name: String, size: Int = 32, storage: CTStorage = CTStorage(),
                 edit: (DicomWriter) throws -> Void) throws -> String {
        try Fixtures.writeSlice(Fixtures.head(size: size), to: dir.file(name), storage: storage, edit: edit)
    }

    @Test func textAndEmptyFilesAreNotDicom() throws {
        try "hello, scanner".write(toFile: dir.file("note.txt"), atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: dir.file("empty.dcm"), contents: Data())
        #expect(rejection(dir.file("note.txt"))?.code == "not_dicom")
        #expect(rejection(dir.file("empty.dcm"))?.code == "not_dicom")
        #expect(rejection(dir.file("missing.dcm"))?.code == "unreadable")
    }

    @Test func secondaryCaptureThatSaysCT() throws {
        let path = try fixture("sc.dcm") { try $0.set("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7") }
        let r = rejection(path)
        #expect(r?.code == "not_ct")
        let message = r?.message ?? ""
        #expect(message.contains("Secondary Capture"))
        #expect(message.contains("Modality CT"))
    }

    @Test func ctClassWithOtherModality() throws {
        let path = try fixture("mr.dcm") { try $0.set("Modality", "MR") }
        #expect(rejection(path)?.code == "not_ct")
    }

    /// (Image Type, the value the reason must name.)
    @Test(arguments: [
        ("ORIGINAL\\PRIMARY\\LOCALIZER", "value 3 LOCALIZER"), ("ORIGINAL\\PRIMARY\\TOPOGRAM", "value 3 TOPOGRAM"),
        ("ORIGINAL\\PRIMARY\\LOCALIZER\\CT_SOM5 TOP", "LOCALIZER"), ("DERIVED\\SECONDARY\\AXIAL", "value 2 SECONDARY"),
        ("DERIVED\\SECONDARY", "value 2 SECONDARY"), ("DERIVED\\PRIMARY\\MPR", "value 3 MPR"),
        ("DERIVED\\PRIMARY\\AXIAL\\MIP", "value 4 MIP"), ("DERIVED\\SECONDARY\\REFORMATTED\\AVERAGE", "value 2 SECONDARY"),
        ("DERIVED\\PRIMARY\\REFORMATTED", "value 3 REFORMATTED"), ("DERIVED\\PRIMARY\\AXIAL\\VOLUME_RENDER", "value 4 VOLUME_RENDER"),
        ("DERIVED\\PRIMARY\\3D", "value 3 3D"), ("DERIVED\\PRIMARY\\AXIAL\\CURVED MPR", "value 4 CURVED MPR"),
        ("DERIVED\\PRIMARY\\PROJECTION IMAGE", "value 3 PROJECTION IMAGE"), ("ORIGINAL\\PRIMARY\\AXIAL\\MINIP", "value 4 MINIP"),
        ("ORIGINAL\\PRIMARY\\AXIAL\\MAT_SPECIFIC", "value 4 MAT_SPECIFIC"), ("ORIGINAL\\PRIMARY\\VOLUME", "value 3 VOLUME"),
        ("MIXED\\PRIMARY\\AXIAL", "value 1 MIXED"),
    ])
    func localizersSecondaryAndDerivations(_ imageType: String, _ named: String) throws {
        let path = try fixture("t.dcm") { try $0.set("ImageType", imageType) }
        let r = rejection(path)
        #expect(r?.code == "not_original_axial")
        #expect(r?.message.contains(imageType) == true, "\(r?.message ?? "accepted")")
        #expect(r?.message.contains(named) == true, "\(r?.message ?? "accepted")")
    }

    /// Reconstructions and slices once stored lossy (DERIVED\PRIMARY\AXIAL), vendors' private values from 4 on,
    /// and files without an Image Type are axial slices and are read.
    @Test(arguments: ["DERIVED\\PRIMARY\\AXIAL", "ORIGINAL\\PRIMARY\\AXIAL\\CT_SOM5 SPI", "DERIVED\\PRIMARY\\AXIAL\\HELIX",
                      "ORIGINAL\\PRIMARY\\AXIAL\\VMI", "ORIGINAL\\PRIMARY", "derived\\primary\\axial", ""])
    func derivedPrimaryAxialIsRead(_ imageType: String) throws {
        let path = try fixture("d.dcm") { try $0.set("ImageType", imageType) }
        #expect(rejection(path) == nil)
    }

    /// Enhanced CT: value 3 is the Image Flavor (VOLUME for an ordinary acquisition), value 4 the Derived Pixel
    /// Contrast (NONE for a reconstruction).
    @Test func enhancedCTImageTypes() {
        #expect(CTImageType.refusal(["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], enhanced: true) == nil)
        #expect(CTImageType.refusal(["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"], enhanced: true) == nil)
        #expect(CTImageType.refusal(["DERIVED", "PRIMARY", "VOLUME", "MAXIMUM"], enhanced: true)?.contains("value 4 MAXIMUM") == true)
        #expect(CTImageType.refusal(["ORIGINAL", "PRIMARY", "LOCALIZER", "NONE"], enhanced: true)?.contains("LOCALIZER") == true)
        #expect(CTImageType.refusal(["DERIVED", "SECONDARY", "VOLUME", "NONE"], enhanced: true)?.contains("SECONDARY") == true)
        // The same VOLUME on single-frame CT Image Storage is not the AXIAL that class defines.
        #expect(CTImageType.refusal(["ORIGINAL", "PRIMARY", "VOLUME"], enhanced: false)?.contains("AXIAL expected") == true)
        // Whole words only: a private value that merely contains the letters is not a derivation.
        #expect(CTImageType.refusal(["ORIGINAL", "PRIMARY", "AXIAL", "MIPMAP3DX"], enhanced: false) == nil)
    }

    @Test func sagittalReformat() throws {
        let path = try fixture("sag.dcm") { try $0.set("ImageOrientationPatient", "0\\1\\0\\0\\0\\-1") }
        #expect(rejection(path)?.code == "not_original_axial")
        // A 20 degree gantry tilt is still axial.
        let c = cos(20.0 * Double.pi / 180), s = sin(20.0 * Double.pi / 180)
        let tilted = try fixture("tilt.dcm") { try $0.set("ImageOrientationPatient", "1\\0\\0\\0\\\(c)\\\(s)") }
        #expect(rejection(tilted) == nil)
    }

    @Test func noPixelData() throws {
        let path = try fixture("nopix.dcm") { try $0.remove("PixelData") }
        #expect(rejection(path) == .noPixelData)
    }

    @Test(arguments: ["RGB", "PALETTE COLOR", "YBR_FULL"])
    func colourImages(_ photometric: String) throws {
        let path = try fixture("rgb.dcm") { try $0.set("PhotometricInterpretation", photometric) }
        #expect(rejection(path)?.code == "unsupported_photometric_interpretation")
    }

    /// DCMTK cannot write JPEG 2000 either, so the fixture is a JPEG-LS file whose transfer syntax UID is
    /// rewritten in place to JPEG 2000 lossless (same length), as a J2K sender's file would announce itself.
    @Test func jpeg2000IsRefusedWithTheReason() throws {
        let path = try Fixtures.writeSlice(Fixtures.head(size: 32), to: dir.file("j2k.dcm"),
                                           storage: CTStorage(transferSyntax: TransferSyntax.jpegLSLossless))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let from = Data(TransferSyntax.jpegLSLossless.utf8), to = Data("1.2.840.10008.1.2.4.90".utf8)
        let range = try #require(bytes.range(of: from))
        bytes.replaceSubrange(range, with: to)
        try bytes.write(to: URL(fileURLWithPath: path))
        let r = rejection(path)
        #expect(r?.code == "unsupported_transfer_syntax")
        #expect(r?.message.contains("no JPEG 2000 decoder") == true)
    }

    @Test(arguments: [("0", "32"), ("32", "0"), ("65535", "65535"), ("4096", "32")])
    func zeroOrAbsurdDimensions(_ rows: String, _ columns: String) throws {
        let path = try fixture("dims.dcm") {
            try $0.set("Rows", rows)
            try $0.set("Columns", columns)
        }
        #expect(rejection(path)?.code == "invalid_dimensions")
    }

    @Test func absurdFrameCountAndBitDepth() throws {
        let frames = try fixture("frames.dcm") { try $0.set("NumberOfFrames", "100000") }
        #expect(rejection(frames)?.code == "invalid_dimensions")
        let bits = try fixture("bits.dcm") { try $0.set("BitsAllocated", "32") }
        #expect(rejection(bits)?.code == "invalid_dimensions")
        let stored = try fixture("stored.dcm") { try $0.set("BitsStored", "17") }
        #expect(rejection(stored)?.code == "invalid_dimensions")
    }

    @Test func pixelDataLengthDisagreesWithHeader() throws {
        let short = try fixture("short.dcm") { try $0.set("Rows", "40") }
        let shortExpected = IngestRejection.pixelDataLengthMismatch(expected: 2560, actual: 2048)
        #expect(rejection(short) == shortExpected)
        let long = try fixture("long.dcm") { try $0.set("Rows", "16") }
        let longExpected = IngestRejection.pixelDataLengthMismatch(expected: 1024, actual: 2048)
        #expect(rejection(long) == longExpected)
        let frames = try fixture("frames2.dcm") { try $0.set("NumberOfFrames", "2") }
        #expect(rejection(frames)?.code == "pixel_data_length_mismatch")
    }

    @Test(arguments: [TransferSyntax.explicitLittleEndian, TransferSyntax.rleLossless, TransferSyntax.jpegLosslessSV1])
    func truncatedFiles(_ syntax: String) throws {
        let path = try Fixtures.writeSlice(Fixtures.head(size: 64), to: dir.file("trunc.dcm"), storage: CTStorage(transferSyntax: syntax))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for keep in [bytes.count - 1, bytes.count - 700, bytes.count / 2] {
            try bytes.prefix(keep).write(to: URL(fileURLWithPath: path))
            let r = rejection(path)
            #expect(r?.code == "truncated" || r?.code == "decode_failed", "kept \(keep) of \(bytes.count): \(String(describing: r))")
        }
    }

    @Test func zeroRescaleSlope() throws {
        let path = try fixture("slope.dcm") { try $0.set("RescaleSlope", "0") }
        #expect(rejection(path)?.code == "invalid_rescale")
    }

    @Test func messagesNeverCarryPatientData() throws {
        // Every rejection above built from the same identity; none may echo the accession or patient fields.
        let identity = Fixtures.identity()
        let paths = [
            try fixture("a.dcm") { try $0.set("Modality", "MR") },
            try fixture("b.dcm") { try $0.set("ImageType", "DERIVED\\SECONDARY") },
            try fixture("c.dcm") { try $0.set("Rows", "0") },
        ]
        for path in paths {
            let message = rejection(path)?.description ?? ""
            #expect(!message.isEmpty)
            let leaked = [identity.accessionNumber, identity.patientID, identity.patientName].filter { message.contains($0) }
            #expect(leaked.isEmpty)
        }
    }
}

extension RejectionTests {
    @Test func corruptCompressedPixelDataFailsToDecode() throws {
        let path = try Fixtures.writeSlice(Fixtures.head(size: 96), to: dir.file("ls.dcm"),
                                           storage: CTStorage(transferSyntax: TransferSyntax.jpegLosslessSV1))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        // Scramble the middle of the JPEG bitstream (the fragment is the file's tail).
        let start = bytes.count - bytes.count / 3
        for i in start..<(start + 64) { bytes[i] = 0xFF }
        try bytes.write(to: URL(fileURLWithPath: path))
        let r = rejection(path)
        #expect(r?.code == "decode_failed", "\(String(describing: r))")
    }

    @Test func directoriesAndFIFOsAreNotRead() throws {
        try FileManager.default.createDirectory(atPath: dir.file("sub.dcm"), withIntermediateDirectories: true)
        #expect(throws: IngestRejection.unreadable("is a directory")) { _ = try SliceFile.open(path: dir.file("sub.dcm")) }
        #expect(mkfifo(dir.file("pipe.dcm"), 0o600) == 0)
        #expect(throws: IngestRejection.unreadable("not a regular file")) { _ = try SliceFile.open(path: dir.file("pipe.dcm")) }
    }
}
