// Plain-C face of the DCMTK shim. Everything DCMTK-specific stays in shim.cpp; Swift sees only these calls.
// Strings are returned into caller buffers; every call that can fail fills `err` with DCMTK's own words.
#ifndef ICHD_CDICOM_H
#define ICHD_CDICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ICHD_DICOM_OK = 0,
    ICHD_DICOM_NOT_DICOM = 1,     // no preamble and no plausible dataset start, or DCMTK found no dataset
    ICHD_DICOM_TRUNCATED = 2,     // the stream ended inside an element
    ICHD_DICOM_READ_ERROR = 3,    // I/O or parse error other than truncation
    ICHD_DICOM_DECODE_ERROR = 4,  // pixel data could not be decoded
    ICHD_DICOM_WRITE_ERROR = 5,
    ICHD_DICOM_NOT_FOUND = 6,     // the element is absent
} ichd_dicom_status;

typedef struct ichd_dicom_file ichd_dicom_file;

/// Registers DCMTK's decoders (JPEG, JPEG-LS, RLE) and encoders once per process; every other call does it too.
void ichd_dicom_initialize(void);

/// Parses the file's header. Large element values (pixel data) stay on disk until asked for, so a header that
/// claims huge dimensions costs nothing here.
ichd_dicom_status ichd_dicom_open(const char *path, ichd_dicom_file **out, char *err, size_t err_len);
void ichd_dicom_close(ichd_dicom_file *file);

/// The transfer syntax the file was written in (meta header, or what DCMTK detected for a bare dataset).
void ichd_dicom_transfer_syntax(const ichd_dicom_file *file, char *buf, size_t len);

/// Reads an element as text (all values, backslash-separated; numbers formatted by DCMTK).
/// frame < 0: top-level dataset only. frame >= 0: the element inside functional-group macro (macro_group,
/// macro_element) of the Per-frame Functional Groups item `frame`, then of the Shared Functional Groups item,
/// then the top level, which is how enhanced multi-frame objects place per-frame attributes.
/// Returns ICHD_DICOM_NOT_FOUND when absent. Text longer than len-1 is cut.
ichd_dicom_status ichd_dicom_get_string(const ichd_dicom_file *file, int32_t frame,
                                        uint16_t macro_group, uint16_t macro_element,
                                        uint16_t group, uint16_t element, char *buf, size_t len);

/// Pixel Data as stored: value length in bytes (native) or the total of its fragments (encapsulated).
ichd_dicom_status ichd_dicom_pixel_data_info(const ichd_dicom_file *file, uint64_t *length,
                                             int *encapsulated, uint32_t *fragments);

/// Decodes one frame into `buffer` as native little-endian samples of BitsAllocated each (unmasked).
/// `buffer_len` must be at least Rows*Columns*SamplesPerPixel*BitsAllocated/8.
ichd_dicom_status ichd_dicom_decode_frame(ichd_dicom_file *file, uint32_t frame, uint8_t *buffer,
                                          size_t buffer_len, char *err, size_t err_len);

// ---- Writing (test fixtures, phantoms) ---------------------------------------------------------------

typedef struct ichd_dicom_writer ichd_dicom_writer;

ichd_dicom_writer *ichd_dicom_writer_create(void);
void ichd_dicom_writer_free(ichd_dicom_writer *writer);

/// Sets an element from text, VR from the dictionary. `path` is DCMTK path syntax: a keyword or "(gggg,eeee)",
/// optionally through sequence items, e.g. "(5200,9229)[0].(0028,9145)[0].RescaleIntercept".
ichd_dicom_status ichd_dicom_writer_put(ichd_dicom_writer *writer, const char *path, const char *value,
                                        char *err, size_t err_len);
/// Removes the element(s) at `path` (same syntax as ichd_dicom_writer_put); absent is not an error.
ichd_dicom_status ichd_dicom_writer_remove(ichd_dicom_writer *writer, const char *path);
/// Stores an element with VR UN (raw bytes), as some routers re-encode attributes they do not know.
ichd_dicom_status ichd_dicom_writer_put_unknown_vr(ichd_dicom_writer *writer, uint16_t group,
                                                   uint16_t element, const uint8_t *bytes, size_t len);
/// Native pixel data: OW when bits_allocated is 16, OB when 8. Bytes are little-endian samples.
ichd_dicom_status ichd_dicom_writer_put_pixel_data(ichd_dicom_writer *writer, const uint8_t *bytes,
                                                   size_t len, int bits_allocated);
/// Encodes to the transfer syntax (compressing as needed) and writes the file.
/// with_meta = 0 writes a bare dataset without preamble and meta header.
/// lossy_quality is used by JPEG baseline/extended (1..100).
ichd_dicom_status ichd_dicom_writer_save(ichd_dicom_writer *writer, const char *path,
                                         const char *transfer_syntax_uid, int with_meta, int lossy_quality,
                                         char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
