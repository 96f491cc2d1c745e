import ArgumentParser
import Foundation
import ICHIngest
import ICHPreprocessing

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what ingest makes of slice files: metadata, Hounsfield statistics, brain coverage, verdict.",
        discussion: """
            Verdicts: score (would be scored), skip (valid slice, too little brain), reject (not scorable; \
            the reason names the cause). With --json, one object per slice (per frame of multi-frame objects), \
            one per line, with stable keys; absent values are null. Exit status 1 when any file is rejected.
            """)

    @Argument(help: "DICOM or JPEG slice files.")
    var files: [String]

    @Flag(help: "One JSON object per slice, one per line.")
    var json = false

    @Flag(help: "One line per slice: file, verdict, brain coverage, reason.")
    var brief = false

    func run() throws {
        let pipeline = SlicePipeline(preprocessing: .rsna)
        var anyRejected = false
        for file in files {
            pipeline.process(path: file, prepare: false) { result in
                let record = InspectRecord(result)
                if record.verdict == "reject" {
                    anyRejected = true
                    printError("\(file): \(record.reason)")
                }
                print(json ? record.jsonLine : brief ? record.line : record.text)
            }
        }
        if anyRejected { throw rejectedExit }
    }
}

/// The inspect report of one slice. Keys are a stable interface (integrators script against them); the
/// accession number is deliberately absent: this output ends up in logs and tickets.
struct InspectRecord: Encodable {
    var file: String
    var frame: Int?
    var sopInstanceUID: String?
    var seriesInstanceUID: String?
    var studyInstanceUID: String?
    var sopClassUID: String?
    var modality: String?
    var instanceNumber: Int?
    var rows: Int?
    var columns: Int?
    var frames: Int?
    var bitsAllocated: Int?
    var bitsStored: Int?
    var pixelRepresentation: Int?
    var photometricInterpretation: String?
    var transferSyntax: String?
    var rescaleSlope: Double?
    var rescaleIntercept: Double?
    var wrapFixApplied: Bool?
    var imagePosition: [Double]?
    var imageOrientation: [Double]?
    var pixelSpacing: [Double]?
    var sliceThickness: Double?
    var huMin: Double?
    var huMax: Double?
    var huMean: Double?
    var brainCoverage: Double?
    var verdict: String
    var reason: String
    var reasonCode: String

    init(_ r: SliceResult) {
        file = r.path
        frame = r.frame
        let h = r.header
        sopInstanceUID = h?.sopInstanceUID
        seriesInstanceUID = h?.seriesInstanceUID
        studyInstanceUID = h?.studyInstanceUID
        sopClassUID = h?.sopClassUID
        modality = h?.modality
        instanceNumber = h?.instanceNumber
        rows = h?.rows ?? r.jpegImage?.height
        columns = h?.columns ?? r.jpegImage?.width
        frames = h?.numberOfFrames
        bitsAllocated = h?.bitsAllocated
        bitsStored = h?.bitsStored
        pixelRepresentation = h?.pixelRepresentation
        photometricInterpretation = h?.photometricInterpretation ?? r.jpegImage.map { $0.channels == 1 ? "JPEG grey" : "JPEG RGB" }
        transferSyntax = h?.transferSyntaxUID
        rescaleSlope = r.conversion?.slope ?? r.frameAttributes?.rescaleSlope
        rescaleIntercept = r.conversion?.intercept ?? r.frameAttributes?.rescaleIntercept
        wrapFixApplied = r.conversion?.wrapFixApplied
        imagePosition = r.frameAttributes?.imagePositionPatient
        imageOrientation = r.frameAttributes?.imageOrientationPatient
        pixelSpacing = r.frameAttributes?.pixelSpacing
        sliceThickness = r.frameAttributes?.sliceThickness
        huMin = r.hounsfieldStatistics.map { Double($0.min) }
        huMax = r.hounsfieldStatistics.map { Double($0.max) }
        huMean = r.hounsfieldStatistics?.mean
        switch r.outcome {
        case .rejected(let rejection):
            verdict = "reject"
            reason = rejection.message
            reasonCode = rejection.code
        case .skipped(let assessment):
            verdict = "skip"
            reason = assessment.reason ?? ""
            reasonCode = "low_brain_coverage"
            brainCoverage = assessment.brainCoverage
        case .ready(let assessment, _):
            verdict = "score"
            reason = ""
            reasonCode = ""
            brainCoverage = assessment.brainCoverage
        }
    }

    enum CodingKeys: String, CodingKey {
        case file, frame, sopInstanceUID = "sop_instance_uid", seriesInstanceUID = "series_instance_uid"
        case studyInstanceUID = "study_instance_uid", sopClassUID = "sop_class_uid", modality
        case instanceNumber = "instance_number", rows, columns, frames, bitsAllocated = "bits_allocated"
        case bitsStored = "bits_stored", pixelRepresentation = "pixel_representation"
        case photometricInterpretation = "photometric_interpretation", transferSyntax = "transfer_syntax"
        case rescaleSlope = "rescale_slope", rescaleIntercept = "rescale_intercept", wrapFixApplied = "wrap_fix_applied"
        case imagePosition = "image_position", imageOrientation = "image_orientation", pixelSpacing = "pixel_spacing"
        case sliceThickness = "slice_thickness", huMin = "hu_min", huMax = "hu_max", huMean = "hu_mean"
        case brainCoverage = "brain_coverage", verdict, reason, reasonCode = "reason_code"
    }

    /// Every key is always present (null when unknown), so consumers can rely on the set of keys.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(frame, forKey: .frame)
        try c.encode(sopInstanceUID, forKey: .sopInstanceUID)
        try c.encode(seriesInstanceUID, forKey: .seriesInstanceUID)
        try c.encode(studyInstanceUID, forKey: .studyInstanceUID)
        try c.encode(sopClassUID, forKey: .sopClassUID)
        try c.encode(modality, forKey: .modality)
        try c.encode(instanceNumber, forKey: .instanceNumber)
        try c.encode(rows, forKey: .rows)
        try c.encode(columns, forKey: .columns)
        try c.encode(frames, forKey: .frames)
        try c.encode(bitsAllocated, forKey: .bitsAllocated)
        try c.encode(bitsStored, forKey: .bitsStored)
        try c.encode(pixelRepresentation, forKey: .pixelRepresentation)
        try c.encode(photometricInterpretation, forKey: .photometricInterpretation)
        try c.encode(transferSyntax, forKey: .transferSyntax)
        try c.encode(rescaleSlope, forKey: .rescaleSlope)
        try c.encode(rescaleIntercept, forKey: .rescaleIntercept)
        try c.encode(wrapFixApplied, forKey: .wrapFixApplied)
        try c.encode(imagePosition, forKey: .imagePosition)
        try c.encode(imageOrientation, forKey: .imageOrientation)
        try c.encode(pixelSpacing, forKey: .pixelSpacing)
        try c.encode(sliceThickness, forKey: .sliceThickness)
        try c.encode(huMin, forKey: .huMin)
        try c.encode(huMax, forKey: .huMax)
        try c.encode(huMean, forKey: .huMean)
        try c.encode(brainCoverage, forKey: .brainCoverage)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(reason, forKey: .reason)
        try c.encode(reasonCode, forKey: .reasonCode)
    }

    var jsonLine: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    var line: String {
        let where_ = file + (frame.map { $0 > 0 || (frames ?? 1) > 1 ? "[\($0)]" : "" } ?? "")
        let coverage = brainCoverage.map { String(format: "brain %5.1f%%", $0 * 100) } ?? "            "
        return "\(where_)  \(verdict.padding(toLength: 6, withPad: " ", startingAt: 0)) \(coverage)  \(reason)"
    }

    var text: String {
        var lines = ["\(file)\(frame.map { " [frame \($0)]" } ?? ""): \(verdict)\(reason.isEmpty ? "" : " (\(reason))")"]
        func add(_ label: String, _ value: Any?) {
            guard let value else { return }
            lines.append("  " + label.padding(toLength: 22, withPad: " ", startingAt: 0) + "\(value)")
        }
        add("SOP Instance UID", sopInstanceUID)
        add("Series Instance UID", seriesInstanceUID)
        add("Modality", modality)
        add("Instance Number", instanceNumber)
        add("Size", rows.flatMap { r in columns.map { "\($0) x \(r)" } })
        add("Bits stored/allocated", bitsStored.flatMap { s in bitsAllocated.map { "\(s)/\($0)" } })
        add("Pixel Representation", pixelRepresentation.map { $0 == 1 ? "signed" : "unsigned" })
        add("Photometric", photometricInterpretation)
        add("Transfer syntax", transferSyntax.map { uid in TransferSyntax.supported[uid].map { "\($0) (\(uid))" } ?? uid })
        add("Rescale", rescaleSlope.flatMap { s in rescaleIntercept.map { "slope \(s), intercept \($0)" } })
        if wrapFixApplied == true { add("RSNA wrap fix", "applied (unsigned 12-bit, intercept above -100)") }
        add("HU min/max/mean", huMin.flatMap { lo in huMax.flatMap { hi in huMean.map { "\(lo) / \(hi) / \(String(format: "%.2f", $0))" } } })
        add("Brain coverage", brainCoverage.map { String(format: "%.2f%%", $0 * 100) })
        return lines.joined(separator: "\n")
    }
}
