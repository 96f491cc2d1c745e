import ICHIngest

/// One slice as the pipeline saw it: where it came from, what ingest found, and what happens to it.
public struct SliceResult: Sendable {
    public enum Outcome: Sendable {
        /// Not scorable at all; the file goes to quarantine with this reason.
        case rejected(IngestRejection)
        /// A valid slice with too little brain to score.
        case skipped(SliceAssessment)
        /// Ready for the engine (the input is nil when the caller asked only for the assessment).
        case ready(SliceAssessment, ModelInput?)
    }

    public let path: String
    /// Frame index for DICOM objects; nil for JPEG and for a file rejected before its frames were known.
    public let frame: Int?
    public let header: CTHeader?
    public let frameAttributes: FrameAttributes?
    public let conversion: HounsfieldConversion?
    /// Over all pixels after slope/intercept (and the wrap fix), before any windowing; nil for JPEG.
    public let hounsfieldStatistics: HounsfieldImage.Statistics?
    public let jpegImage: (width: Int, height: Int, channels: Int)?
    public let outcome: Outcome
}

/// ingest -> preprocess for one file, frame by frame (memory stays one frame deep).
public struct SlicePipeline: Sendable {
    public let preprocessor: SlicePreprocessor
    public let limits: IngestLimits

    public init(preprocessing: Preprocessing, limits: IngestLimits = .default) {
        preprocessor = SlicePreprocessor(preprocessing)
        self.limits = limits
    }

    /// Calls `body` once per slice of the file (once with the rejection when the file is refused).
    /// `prepare: false` stops after the assessment (inspection); `force: true` prepares skipped slices too.
    public func process(path: String, prepare: Bool = true, force: Bool = false, frames: Range<Int>? = nil,
                        _ body: (SliceResult) -> Void) {
        let file: SliceFile
        do {
            file = try SliceFile.open(path: path, limits: limits)
        } catch {
            body(SliceResult(path: path, frame: nil, header: nil, frameAttributes: nil, conversion: nil,
                             hounsfieldStatistics: nil, jpegImage: nil, outcome: .rejected(error)))
            return
        }
        process(file, path: path, prepare: prepare, force: force, frames: frames, body)
    }

    /// The same for a file already opened (the daemon reads the header first to key the file).
    public func process(_ file: SliceFile, path: String, prepare: Bool = true, force: Bool = false, frames: Range<Int>? = nil,
                        _ body: (SliceResult) -> Void) {
        switch file {
        case .jpeg(let image):
            let assessment = preprocessor.assess(image)
            body(SliceResult(path: path, frame: nil, header: nil, frameAttributes: nil, conversion: nil,
                             hounsfieldStatistics: nil, jpegImage: (image.width, image.height, image.channels),
                             outcome: outcome(assessment, prepare: prepare, force: force) { preprocessor.prepare(image, assessment: assessment) }))
        case .dicom(let reader):
            let wanted = frames.map { $0.clamped(to: 0..<reader.frameCount) } ?? 0..<reader.frameCount
            for frame in wanted {
                do {
                    let slice = try reader.readFrame(frame)
                    let assessment = preprocessor.assess(slice.image)
                    body(SliceResult(path: path, frame: frame, header: reader.header, frameAttributes: slice.attributes,
                                     conversion: slice.conversion, hounsfieldStatistics: slice.image.statistics, jpegImage: nil,
                                     outcome: outcome(assessment, prepare: prepare, force: force) { preprocessor.prepare(slice.image, assessment: assessment) }))
                } catch {
                    body(SliceResult(path: path, frame: frame, header: reader.header, frameAttributes: reader.frameAttributes(frame),
                                     conversion: nil, hounsfieldStatistics: nil, jpegImage: nil, outcome: .rejected(error)))
                }
            }
        }
    }

    /// One slice of a file (frame `frame`) prepared for the model even when it would be skipped; the
    /// assessment says whether it would be.
    public func prepareSlice(path: String, frame: Int = 0) throws(IngestRejection) -> (assessment: SliceAssessment, input: ModelInput) {
        var result: SliceResult?
        process(path: path, force: true, frames: frame..<(frame + 1)) { result = $0 }
        guard let result else { throw .invalidDimensions("the object has no frame \(frame)") }
        switch result.outcome {
        case .rejected(let rejection): throw rejection
        case .ready(let assessment, let input?): return (assessment, input)
        case .ready(_, nil), .skipped: preconditionFailure("force: true prepares every slice")
        }
    }

    private func outcome(_ assessment: SliceAssessment, prepare: Bool, force: Bool,
                         _ make: () -> ModelInput) -> SliceResult.Outcome {
        if case .skip = assessment, !force { return .skipped(assessment) }
        return .ready(assessment, prepare ? make() : nil)
    }
}
