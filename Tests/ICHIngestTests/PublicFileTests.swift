import Foundation
@testable import ICHIngest
import ICHTestSupport
import Testing

/// Files written by other software (the pydicom project's test set), read through DCMTK.
@Suite(.enabled(if: PublicDicomFiles.available, "run scripts/fetch-test-data.sh (make test does)"))
struct PublicFileTests {
    struct Oracle: Decodable {
        var rows: Int
        var columns: Int
        var sop_instance_uid: String
        var first_stored: [Int]
        var hu_min: Double
        var hu_max: Double
        var hu_mean: Double
    }

    static func oracle(_ name: String) throws -> Oracle {
        let data = try Data(contentsOf: PublicDicomFiles.directory.appendingPathComponent("oracle.json"))
        return try JSONDecoder().decode([String: Oracle].self, from: data)[name]!
    }

    @Test func ctSmallMatchesPydicom() throws {
        let oracle = try Self.oracle("CT_small.dcm")
        let reader = try DicomSliceReader(path: PublicDicomFiles.path("CT_small.dcm"))
        #expect(reader.header.sopInstanceUID == oracle.sop_instance_uid)
        #expect(reader.header.rows == oracle.rows && reader.header.columns == oracle.columns)
        #expect(reader.header.transferSyntaxUID == TransferSyntax.explicitLittleEndian)
        #expect(reader.header.imageType == ["ORIGINAL", "PRIMARY", "AXIAL"])
        let slice = try reader.readFrame(0)
        #expect(!slice.conversion.wrapFixApplied)
        let first = slice.image.pixels.prefix(16).map { Int($0) + 1024 }
        #expect(first == oracle.first_stored)
        let stats = slice.image.statistics
        #expect(Double(stats.min) == oracle.hu_min)
        #expect(Double(stats.max) == oracle.hu_max)
        #expect(abs(stats.mean - oracle.hu_mean) < 1e-9)
    }

    /// The same MR image in five encodings decodes to identical samples (MR is refused by the CT reader, so
    /// this goes one level down, to the file's frame decoder).
    @Test(arguments: ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_jpeg_ls_lossless.dcm"])
    func mrEncodingsDecodeIdentically(_ name: String) throws {
        let oracle = try Self.oracle("MR_small.dcm")
        func samples(_ file: String) throws -> [Int16] {
            let dicom = try DicomFile(path: PublicDicomFiles.path(file))
            var out = [Int16](repeating: 0, count: oracle.rows * oracle.columns)
            let failure = out.withUnsafeMutableBytes { dicom.decodeFrame(0, into: $0) }
            #expect(failure == nil, "\(file): \(failure ?? "")")
            return out
        }
        let reference = try samples("MR_small.dcm")
        #expect(reference.prefix(16).map(Int.init) == oracle.first_stored)
        #expect(try samples(name) == reference)
    }

    @Test(arguments: [
        ("MR_small.dcm", "not_ct"), ("rtplan.dcm", "not_ct"), ("test-SR.dcm", "not_ct"), ("rtdose.dcm", "not_ct"),
        ("liver_1frame.dcm", "not_ct"), ("JPGExtended.dcm", "not_ct"), ("image_dfl.dcm", "not_ct"),
        ("ExplVR_LitEndNoMeta.dcm", "not_ct"), ("ExplVR_BigEndNoMeta.dcm", "not_ct"),
        ("MR_truncated.dcm", "truncated"), ("README.txt", "not_dicom"),
        // pydicom's "CT_small without meta header" starts with a stray byte; pydicom forces it, ichd refuses it.
        ("no_meta.dcm", "not_dicom"),
    ])
    func refusedWithReason(_ name: String, _ code: String) {
        #expect {
            _ = try DicomSliceReader(path: PublicDicomFiles.path(name))
        } throws: { error in
            (error as? IngestRejection)?.code == code
        }
    }

    @Test func secondaryCaptureReasonNamesTheClass() throws {
        do {
            _ = try DicomSliceReader(path: PublicDicomFiles.path("image_dfl.dcm"))
            Issue.record("accepted a Secondary Capture")
        } catch {
            #expect(error.message.contains("Secondary Capture Image Storage"))
        }
    }
}
