import ICHIngest
import ICHPreprocessing

/// In-process preprocessing, to compare with what the CLI wrote.
enum ICHPreprocessingBridge {
    static func tensor(_ image: HounsfieldImage) -> [Float] {
        SlicePreprocessor(.rsna).prepare(image).tensor
    }
}
