// DCMTK behind a C ABI. Why a shim: Swift's C++ interop imports DCMTK only partly (tag macros, OFString,
// codec registration), so the few DCMTK calls ichd needs live here and Swift sees CDicom.h.
#if !__has_include(<dcmtk/dcmdata/dctk.h>)
#error "DCMTK headers not found: install the Debian package libdcmtk-dev (make deps does it)"
#endif

#include "CDicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcwcache.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcpath.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcvrobow.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcrlerp.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpeg/djrploss.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdio>
#include <cstring>
#include <mutex>

struct ichd_dicom_file {
    DcmFileFormat format;
    OFString transferSyntaxUID;
    DcmFileCache cache;
    // getUncompressedFrame finds a frame's first fragment fastest when told where the previous frame ended.
    long lastFrame = -1;
    Uint32 nextFragment = 0;
};

struct ichd_dicom_writer {
    DcmFileFormat format;
};

static void copyText(const char *text, char *buf, size_t len) {
    if (buf == nullptr || len == 0) return;
    std::snprintf(buf, len, "%s", text ? text : "");
}

static std::once_flag initOnce;

extern "C" void ichd_dicom_initialize(void) {
    std::call_once(initOnce, [] {
        // DCMTK logs parser complaints to stderr by default; ichd reports them itself through typed errors.
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        // Routers sometimes re-encode attributes as UN; read them with their dictionary VR.
        dcmEnableUnknownVRConversion.set(OFTrue);
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
        // Never mint a new SOP Instance UID on lossy compression: fixtures keep the identity they were given.
        DJEncoderRegistration::registerCodecs(ECC_lossyYCbCr, EUC_never);
        DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, OFTrue, 0, OFTrue, EJLSUC_never);
        // One fragment per frame, as PS3.5 Annex G requires for RLE (fragment size 0 = unlimited).
        DcmRLEEncoderRegistration::registerCodecs(OFFalse, 0);
    });
}

/// A file either starts with a 128-byte preamble and "DICM", or (bare dataset) with an element of group
/// 0x0002 or 0x0008 in either byte order. Anything else is not DICOM, whatever DCMTK might make of it.
static ichd_dicom_status sniff(const char *path, bool &hasMeta, char *err, size_t errLen) {
    FILE *f = std::fopen(path, "rb");
    if (f == nullptr) {
        copyText(std::strerror(errno), err, errLen);
        return ICHD_DICOM_READ_ERROR;
    }
    unsigned char head[132];
    size_t n = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    if (n == sizeof head && std::memcmp(head + 128, "DICM", 4) == 0) {
        hasMeta = true;
        return ICHD_DICOM_OK;
    }
    hasMeta = false;
    if (n >= 8) {
        unsigned groupLE = head[0] | (head[1] << 8);
        unsigned groupBE = (head[0] << 8) | head[1];
        if (groupLE == 0x0008 || groupLE == 0x0002 || groupBE == 0x0008 || groupBE == 0x0002) return ICHD_DICOM_OK;
    }
    copyText(n == 0 ? "empty file" : "no DICM preamble and no DICOM dataset at the start of the file", err, errLen);
    return ICHD_DICOM_NOT_DICOM;
}

extern "C" ichd_dicom_status ichd_dicom_open(const char *path, ichd_dicom_file **out, char *err, size_t errLen) {
    ichd_dicom_initialize();
    *out = nullptr;
    bool hasMeta = false;
    ichd_dicom_status sniffed = sniff(path, hasMeta, err, errLen);
    if (sniffed != ICHD_DICOM_OK) return sniffed;

    auto *file = new ichd_dicom_file();
    // maxReadLength 4096: larger values (pixel data) are read from disk only when accessed.
    OFCondition cond = file->format.loadFile(path, EXS_Unknown, EGL_noChange, 4096,
                                             hasMeta ? ERM_autoDetect : ERM_dataset);
    if (cond.bad()) {
        copyText(cond.text(), err, errLen);
        delete file;
        // A stream that ends inside an element reports "premature end of stream"; one that ends inside an
        // encapsulated pixel sequence reports "Invalid stream". Both mean the file is cut short.
        if (cond == EC_StreamNotifyClient || cond == EC_InvalidStream) return ICHD_DICOM_TRUNCATED;
        return ICHD_DICOM_READ_ERROR;
    }
    DcmDataset *ds = file->format.getDataset();
    if (ds == nullptr || ds->card() == 0) {
        copyText("the file holds no DICOM dataset", err, errLen);
        delete file;
        return ICHD_DICOM_NOT_DICOM;
    }
    OFString uid;
    if (hasMeta && file->format.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, uid).good() && !uid.empty()) {
        file->transferSyntaxUID = uid;
    } else {
        file->transferSyntaxUID = DcmXfer(ds->getOriginalXfer()).getXferID();
    }
    *out = file;
    return ICHD_DICOM_OK;
}

extern "C" void ichd_dicom_close(ichd_dicom_file *file) { delete file; }

extern "C" void ichd_dicom_transfer_syntax(const ichd_dicom_file *file, char *buf, size_t len) {
    copyText(file->transferSyntaxUID.c_str(), buf, len);
}

static DcmItem *macroItem(DcmItem *dataset, const DcmTagKey &groups, long index, const DcmTagKey &macro) {
    DcmItem *groupItem = nullptr;
    if (dataset->findAndGetSequenceItem(groups, groupItem, index).bad() || groupItem == nullptr) return nullptr;
    DcmItem *macroIt = nullptr;
    if (groupItem->findAndGetSequenceItem(macro, macroIt, 0).bad()) return nullptr;
    return macroIt;
}

static bool readText(DcmItem *item, const DcmTagKey &key, OFString &value) {
    if (item == nullptr) return false;
    DcmElement *element = nullptr;
    if (item->findAndGetElement(key, element).bad() || element == nullptr) return false;
    return element->getOFStringArray(value).good();
}

extern "C" ichd_dicom_status ichd_dicom_get_string(const ichd_dicom_file *file, int32_t frame, uint16_t macroGroup,
                                                   uint16_t macroElement, uint16_t group, uint16_t element,
                                                   char *buf, size_t len) {
    DcmDataset *ds = const_cast<DcmFileFormat &>(file->format).getDataset();
    DcmTagKey key(group, element);
    OFString value;
    bool found = false;
    if (frame >= 0) {
        DcmTagKey macro(macroGroup, macroElement);
        found = readText(macroItem(ds, DCM_PerFrameFunctionalGroupsSequence, frame, macro), key, value) ||
                readText(macroItem(ds, DCM_SharedFunctionalGroupsSequence, 0, macro), key, value);
    }
    if (!found) found = readText(ds, key, value);
    if (!found) {
        copyText("", buf, len);
        return ICHD_DICOM_NOT_FOUND;
    }
    copyText(value.c_str(), buf, len);
    return ICHD_DICOM_OK;
}

static DcmPixelData *pixelData(const ichd_dicom_file *file) {
    DcmDataset *ds = const_cast<DcmFileFormat &>(file->format).getDataset();
    DcmElement *element = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) return nullptr;
    if (element->ident() != EVR_PixelData) return nullptr;
    return OFstatic_cast(DcmPixelData *, element);
}

extern "C" ichd_dicom_status ichd_dicom_pixel_data_info(const ichd_dicom_file *file, uint64_t *length,
                                                        int *encapsulated, uint32_t *fragments) {
    *length = 0;
    *encapsulated = 0;
    *fragments = 0;
    DcmPixelData *pd = pixelData(file);
    if (pd == nullptr) return ICHD_DICOM_NOT_FOUND;
    DcmDataset *ds = const_cast<DcmFileFormat &>(file->format).getDataset();
    DcmXfer original(ds->getOriginalXfer());
    if (original.isEncapsulated()) {
        *encapsulated = 1;
        E_TransferSyntax xfer = EXS_Unknown;
        const DcmRepresentationParameter *param = nullptr;
        pd->getOriginalRepresentationKey(xfer, param);
        DcmPixelSequence *sequence = nullptr;
        if (pd->getEncapsulatedRepresentation(xfer, param, sequence).bad() || sequence == nullptr) {
            return ICHD_DICOM_NOT_FOUND;
        }
        uint64_t total = 0;
        unsigned long count = sequence->card();
        for (unsigned long i = 1; i < count; i++) {  // item 0 is the basic offset table
            DcmPixelItem *item = nullptr;
            if (sequence->getItem(item, i).good() && item != nullptr) total += item->getLength();
        }
        *length = total;
        *fragments = count > 0 ? OFstatic_cast(uint32_t, count - 1) : 0;
        return ICHD_DICOM_OK;
    }
    *length = pd->getLength();
    return ICHD_DICOM_OK;
}

static bool decodeWholeDataset(DcmDataset *ds, DcmPixelData *pd, uint8_t *buffer, size_t bufferLen) {
    if (ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad()) return false;
    Uint8 *bytes = nullptr;
    if (pd->getUint8Array(bytes).bad() || bytes == nullptr) return false;
    Uint32 frameBytes = 0;
    if (pd->getUncompressedFrameSize(ds, frameBytes).bad() || frameBytes > bufferLen || pd->getLength() < frameBytes) return false;
    std::memcpy(buffer, bytes, frameBytes);
    return true;
}

extern "C" ichd_dicom_status ichd_dicom_decode_frame(ichd_dicom_file *file, uint32_t frame, uint8_t *buffer,
                                                     size_t bufferLen, char *err, size_t errLen) {
    DcmPixelData *pd = pixelData(file);
    if (pd == nullptr) {
        copyText("no Pixel Data element", err, errLen);
        return ICHD_DICOM_NOT_FOUND;
    }
    DcmDataset *ds = file->format.getDataset();
    Uint32 start = (OFstatic_cast(long, frame) == file->lastFrame + 1) ? file->nextFragment : 0;
    OFString colorModel;
    OFCondition cond = pd->getUncompressedFrame(ds, frame, start, buffer, OFstatic_cast(Uint32, bufferLen),
                                                colorModel, &file->cache);
    if (cond.bad()) {
        file->lastFrame = -1;
        file->nextFragment = 0;
        // DCMTK's frame-wise RLE decoder refuses frames split over several fragments (not conformant, but
        // sent by some encoders). For a single-frame object, decoding the whole dataset costs the same memory.
        long frames = 1;
        ds->findAndGetLongInt(DCM_NumberOfFrames, frames);
        if (frames > 1 || !decodeWholeDataset(ds, pd, buffer, bufferLen)) {
            copyText(cond.text(), err, errLen);
            return ICHD_DICOM_DECODE_ERROR;
        }
        return ICHD_DICOM_OK;
    }
    file->lastFrame = frame;
    file->nextFragment = start;
    // Decoded frames live in memory inside DCMTK too; drop them so memory stays one frame deep.
    pd->compact();
    return ICHD_DICOM_OK;
}

// ---- Writer ------------------------------------------------------------------------------------------

extern "C" ichd_dicom_writer *ichd_dicom_writer_create(void) {
    ichd_dicom_initialize();
    return new ichd_dicom_writer();
}

extern "C" void ichd_dicom_writer_free(ichd_dicom_writer *writer) { delete writer; }

extern "C" ichd_dicom_status ichd_dicom_writer_put(ichd_dicom_writer *writer, const char *path, const char *value,
                                                   char *err, size_t errLen) {
    DcmPathProcessor processor;
    OFString key = OFString(path) + "=" + OFString(value);
    OFCondition cond = processor.applyPathWithValue(writer->format.getDataset(), key);
    if (cond.bad()) {
        copyText(cond.text(), err, errLen);
        return ICHD_DICOM_WRITE_ERROR;
    }
    return ICHD_DICOM_OK;
}

extern "C" ichd_dicom_status ichd_dicom_writer_remove(ichd_dicom_writer *writer, const char *path) {
    DcmPathProcessor processor;
    Uint32 deleted = 0;
    OFCondition cond = processor.findOrDeletePath(writer->format.getDataset(), path, deleted);
    return (cond.good() || cond == EC_TagNotFound) ? ICHD_DICOM_OK : ICHD_DICOM_WRITE_ERROR;
}

extern "C" ichd_dicom_status ichd_dicom_writer_put_unknown_vr(ichd_dicom_writer *writer, uint16_t group,
                                                              uint16_t element, const uint8_t *bytes,
                                                              size_t len) {
    DcmTag tag(group, element, EVR_UN);
    auto *value = new DcmOtherByteOtherWord(tag);
    if (value->putUint8Array(bytes, OFstatic_cast(unsigned long, len)).bad() ||
        writer->format.getDataset()->insert(value, OFTrue).bad()) {
        return ICHD_DICOM_WRITE_ERROR;
    }
    return ICHD_DICOM_OK;
}

extern "C" ichd_dicom_status ichd_dicom_writer_put_pixel_data(ichd_dicom_writer *writer, const uint8_t *bytes,
                                                              size_t len, int bitsAllocated) {
    auto *pd = new DcmPixelData(DCM_PixelData);
    OFCondition cond;
    if (bitsAllocated == 16) {
        pd->setVR(EVR_OW);
        cond = pd->putUint16Array(reinterpret_cast<const Uint16 *>(bytes), OFstatic_cast(unsigned long, len / 2));
    } else {
        pd->setVR(EVR_OB);
        cond = pd->putUint8Array(bytes, OFstatic_cast(unsigned long, len));
    }
    if (cond.bad() || writer->format.getDataset()->insert(pd, OFTrue).bad()) return ICHD_DICOM_WRITE_ERROR;
    return ICHD_DICOM_OK;
}

extern "C" ichd_dicom_status ichd_dicom_writer_save(ichd_dicom_writer *writer, const char *path,
                                                    const char *uid, int withMeta, int lossyQuality,
                                                    char *err, size_t errLen) {
    DcmXfer target(uid);
    E_TransferSyntax xfer = target.getXfer();
    if (xfer == EXS_Unknown) {
        copyText("unknown transfer syntax UID", err, errLen);
        return ICHD_DICOM_WRITE_ERROR;
    }
    DcmDataset *ds = writer->format.getDataset();
    // Lossy JPEG encoders rewrite Image Type (DERIVED) and Lossy Image Compression; fixtures control those
    // attributes themselves, so keep them as they were set.
    OFString imageType;
    bool hadImageType = ds->findAndGetOFStringArray(DCM_ImageType, imageType).good();

    OFCondition cond = EC_Normal;
    if (target.isEncapsulated()) {
        DJ_RPLossy lossy(lossyQuality > 0 ? lossyQuality : 90);
        DJ_RPLossless lossless(1, 0);
        DJLSRepresentationParameter lsLossless(0, OFTrue);
        DJLSRepresentationParameter lsNear(2, OFFalse);
        DcmRLERepresentationParameter rle;
        const DcmRepresentationParameter *param = nullptr;
        switch (xfer) {
            case EXS_JPEGProcess1:
            case EXS_JPEGProcess2_4: param = &lossy; break;
            case EXS_JPEGProcess14:
            case EXS_JPEGProcess14SV1: param = &lossless; break;
            case EXS_JPEGLSLossless: param = &lsLossless; break;
            case EXS_JPEGLSLossy: param = &lsNear; break;
            case EXS_RLELossless: param = &rle; break;
            default:
                copyText("no encoder for this transfer syntax in this DCMTK build", err, errLen);
                return ICHD_DICOM_WRITE_ERROR;
        }
        cond = ds->chooseRepresentation(xfer, param);
        if (cond.good() && !ds->canWriteXfer(xfer)) cond = EC_CannotChangeRepresentation;
        if (cond.bad()) {
            copyText(cond.text(), err, errLen);
            return ICHD_DICOM_WRITE_ERROR;
        }
        if (hadImageType) ds->putAndInsertOFStringArray(DCM_ImageType, imageType);
    }
    cond = writer->format.saveFile(path, xfer, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding, 0, 0,
                                   withMeta ? EWM_fileformat : EWM_dataset);
    if (cond.bad()) {
        copyText(cond.text(), err, errLen);
        return ICHD_DICOM_WRITE_ERROR;
    }
    return ICHD_DICOM_OK;
}
