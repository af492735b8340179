/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* DismApi.h - Microsoft's DISM image-mount API for Linux.
 *
 * Names, signatures, constants, enumerations, structure layouts and HRESULT
 * values follow Microsoft's DismApi.h (ADK) for the mount family; see
 * docs/dism-api.md for the sources and for the Linux-specific choices:
 *
 *  - PCWSTR is `const wchar_t *`, so Windows sample code with L"..." literals
 *    compiles unchanged.  On Linux wchar_t is 32 bits (UTF-32); strings are
 *    NUL-terminated wide strings and paths are POSIX paths.
 *  - A HANDLE used as CancelEvent carries an eventfd: make one with
 *    DismCreateCancelEvent() (or eventfd(0, EFD_CLOEXEC) and
 *    DISM_HANDLE_FROM_FD(fd)); signal it by writing a non-zero 8-byte value
 *    (DismSetCancelEvent()).
 *  - WINAPI and CALLBACK are empty (no stdcall on Linux).
 */
#ifndef DISMAPI_H
#define DISMAPI_H

#include <stdint.h>
#include <wchar.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Windows base types ------------------------------------------------ */
#ifndef DISM_NO_WINDOWS_TYPES
typedef int32_t HRESULT;
typedef uint32_t UINT;
typedef uint32_t DWORD;
typedef uint64_t UINT64;
typedef int BOOL;
typedef uint16_t WORD;
typedef void VOID;
typedef void *PVOID;
typedef void *HANDLE;
typedef const wchar_t *PCWSTR;
typedef wchar_t *PWSTR;
#ifndef WINAPI
#define WINAPI
#endif
#ifndef CALLBACK
#define CALLBACK
#endif
#ifndef S_OK
#define S_OK ((HRESULT) 0x00000000L)
#endif
#define SUCCEEDED(hr) (((HRESULT) (hr)) >= 0)
#define FAILED(hr) (((HRESULT) (hr)) < 0)
#define HRESULT_CODE(hr) ((hr) & 0xFFFF)
#define HRESULT_FACILITY(hr) (((hr) >> 16) & 0x1FFF)
#define FACILITY_WIN32 7
#define HRESULT_FROM_WIN32(x) \
  ((HRESULT) (x) <= 0 ? (HRESULT) (x) \
                      : (HRESULT) (((x) & 0x0000FFFF) | (FACILITY_WIN32 << 16) | 0x80000000))

typedef struct _SYSTEMTIME {
  WORD wYear;
  WORD wMonth;
  WORD wDayOfWeek;
  WORD wDay;
  WORD wHour;
  WORD wMinute;
  WORD wSecond;
  WORD wMilliseconds;
} SYSTEMTIME;
#endif

/* Common HRESULTs and Win32 errors the mount family returns. */
#define E_NOTIMPL      ((HRESULT) 0x80004001L)
#define E_POINTER      ((HRESULT) 0x80004003L)
#define E_ABORT        ((HRESULT) 0x80004004L)
#define E_FAIL         ((HRESULT) 0x80004005L)
#define E_UNEXPECTED   ((HRESULT) 0x8000FFFFL)
#define E_ACCESSDENIED ((HRESULT) 0x80070005L)
#define E_HANDLE       ((HRESULT) 0x80070006L)
#define E_OUTOFMEMORY  ((HRESULT) 0x8007000EL)
#define E_INVALIDARG   ((HRESULT) 0x80070057L)

#define ERROR_FILE_NOT_FOUND          2L
#define ERROR_PATH_NOT_FOUND          3L
#define ERROR_ACCESS_DENIED           5L
#define ERROR_WRITE_PROTECT           19L
#define ERROR_SHARING_VIOLATION       32L
#define ERROR_NOT_SUPPORTED           50L
#define ERROR_INVALID_PARAMETER       87L
#define ERROR_DISK_FULL               112L
#define ERROR_INVALID_NAME            123L
#define ERROR_DIR_NOT_EMPTY           145L
#define ERROR_BUSY                    170L
#define ERROR_ALREADY_EXISTS          183L
#define ERROR_ELEVATION_REQUIRED      740L
#define ERROR_CANCELLED               1223L
#define ERROR_REQUEST_ABORTED         1235L
#define ERROR_FILE_CORRUPT            1392L
#define ERROR_SUCCESS_REBOOT_REQUIRED 3010L

/* ---- Constants ---------------------------------------------------------- */
#define DISM_ONLINE_IMAGE L"DISM_{53BFAE52-B167-4E2F-A258-0A37B57FF845}"
#define DISM_SESSION_DEFAULT 0

#define DISM_MOUNT_READWRITE       0x00000000
#define DISM_MOUNT_READONLY        0x00000001
#define DISM_MOUNT_OPTIMIZE        0x00000002
#define DISM_MOUNT_CHECK_INTEGRITY 0x00000004
#define DISM_MOUNT_SUPPORT_EA      0x00000008

#define DISM_COMMIT_IMAGE              0x00000000
#define DISM_DISCARD_IMAGE             0x00000001
#define DISM_COMMIT_GENERATE_INTEGRITY 0x00010000
#define DISM_COMMIT_APPEND             0x00020000
#define DISM_COMMIT_MASK               0xFFFF0000

#define DISM_RESERVED_STORAGE_DISABLED 0x00000000
#define DISM_RESERVED_STORAGE_ENABLED  0x00000001

/* ---- DISMAPI HRESULTs ---------------------------------------------------- */
#define DISMAPI_S_RELOAD_IMAGE_SESSION_REQUIRED             ((HRESULT) 0x00000001L)
#define DISMAPI_E_DISMAPI_NOT_INITIALIZED                   ((HRESULT) 0xC0040001L)
#define DISMAPI_E_SHUTDOWN_IN_PROGRESS                      ((HRESULT) 0xC0040002L)
#define DISMAPI_E_OPEN_SESSION_HANDLES                      ((HRESULT) 0xC0040003L)
#define DISMAPI_E_INVALID_DISM_SESSION                      ((HRESULT) 0xC0040004L)
#define DISMAPI_E_INVALID_IMAGE_INDEX                       ((HRESULT) 0xC0040005L)
#define DISMAPI_E_INVALID_IMAGE_NAME                        ((HRESULT) 0xC0040006L)
#define DISMAPI_E_UNABLE_TO_UNMOUNT_IMAGE_PATH              ((HRESULT) 0xC0040007L)
/* Not in Microsoft's header; our choice, see docs/dism-api.md. */
#define DISMAPI_E_DISMAPI_ALREADY_INITIALIZED               ((HRESULT) 0xC0040008L)
#define DISMAPI_E_LOGGING_DISABLED                          ((HRESULT) 0xC0040009L)
#define DISMAPI_E_OPEN_HANDLES_UNABLE_TO_UNMOUNT_IMAGE_PATH ((HRESULT) 0xC004000AL)
#define DISMAPI_E_OPEN_HANDLES_UNABLE_TO_MOUNT_IMAGE_PATH   ((HRESULT) 0xC004000BL)
#define DISMAPI_E_OPEN_HANDLES_UNABLE_TO_REMOUNT_IMAGE_PATH ((HRESULT) 0xC004000CL)
#define DISMAPI_E_PARENT_FEATURE_DISABLED                   ((HRESULT) 0xC004000DL)
#define DISMAPI_E_MUST_SPECIFY_ONLINE_IMAGE                 ((HRESULT) 0xC004000EL)
#define DISMAPI_E_INVALID_PRODUCT_KEY                       ((HRESULT) 0xC004000FL)
#define DISMAPI_E_MUST_SPECIFY_INDEX_OR_NAME                ((HRESULT) 0xC0040020L)
#define DISMAPI_E_NEEDS_REMOUNT                             ((HRESULT) 0xC1510114L)
#define DISMAPI_E_UNKNOWN_FEATURE                           ((HRESULT) 0x800F080CL)
#define DISMAPI_E_BUSY                                      ((HRESULT) 0x800F0902L)

/* Imaging-provider codes DISM passes through from mount and unmount. */
#define DISM_E_MOUNT_DIR_HAS_MOUNT         ((HRESULT) 0xC1420113L)
#define DISM_E_MOUNT_DIR_NOT_EMPTY         ((HRESULT) 0xC1420114L)
#define DISM_E_PARTIAL_UNMOUNT             ((HRESULT) 0xC1420117L)
#define DISM_E_NOT_A_MOUNT_POINT           ((HRESULT) 0xC142011CL)
#define DISM_E_CANNOT_COMMIT_PARTIAL       ((HRESULT) 0xC142011DL)
#define DISM_E_ALREADY_MOUNTED_READWRITE   ((HRESULT) 0xC1420127L)
#define DISM_E_NO_PERMISSION_TO_MOUNT_RW   ((HRESULT) 0xC1510111L)

/* ---- Enumerations ------------------------------------------------------- */
typedef UINT DismSession;

typedef enum _DismLogLevel {
  DismLogErrors = 0,
  DismLogErrorsWarnings = 1,
  DismLogErrorsWarningsInfo = 2,
  DismLogErrorsWarningsInfoDebug = 3
} DismLogLevel;

typedef enum _DismImageIdentifier {
  DismImageIndex = 0,
  DismImageName = 1,
  DismImageNone = 2
} DismImageIdentifier;

typedef enum _DismMountMode {
  DismReadWrite = 0,
  DismReadOnly = 1
} DismMountMode;

typedef enum _DismImageType {
  DismImageTypeUnsupported = -1,
  DismImageTypeWim = 0,
  DismImageTypeVhd = 1
} DismImageType;

typedef enum _DismImageBootable {
  DismImageBootableYes = 0,
  DismImageBootableNo = 1,
  DismImageBootableUnknown = 2
} DismImageBootable;

typedef enum _DismMountStatus {
  DismMountStatusOk = 0,
  DismMountStatusNeedsRemount = 1,
  DismMountStatusInvalid = 2
} DismMountStatus;

typedef enum _DismImageHealthState {
  DismImageHealthy = 0,
  DismImageRepairable = 1,
  DismImageNonRepairable = 2
} DismImageHealthState;

/* ---- Structures (packed, as in Microsoft's header) ---------------------- */
#pragma pack(push, 1)

typedef struct _DismString {
  PCWSTR Value;
} DismString;

typedef DismString DismLanguage;

typedef struct _DismMountedImageInfo {
  PCWSTR MountPath;
  PCWSTR ImageFilePath;
  UINT ImageIndex;
  DismMountMode MountMode;
  DismMountStatus MountStatus;
} DismMountedImageInfo;

typedef struct _DismWimCustomizedInfo {
  UINT Size;
  UINT DirectoryCount;
  UINT FileCount;
  SYSTEMTIME CreatedTime;
  SYSTEMTIME ModifiedTime;
} DismWimCustomizedInfo;

typedef struct _DismImageInfo {
  DismImageType ImageType;
  UINT ImageIndex;
  PCWSTR ImageName;
  PCWSTR ImageDescription;
  UINT64 ImageSize;
  UINT Architecture;
  PCWSTR ProductName;
  PCWSTR EditionId;
  PCWSTR InstallationType;
  PCWSTR Hal;
  PCWSTR ProductType;
  PCWSTR ProductSuite;
  UINT MajorVersion;
  UINT MinorVersion;
  UINT Build;
  UINT SpBuild;
  UINT SpLevel;
  DismImageBootable Bootable;
  PCWSTR SystemRoot;
  DismLanguage *Language;
  UINT LanguageCount;
  UINT DefaultLanguageIndex;
  VOID *CustomizedInfo;
} DismImageInfo;

#pragma pack(pop)

typedef void(CALLBACK *DISM_PROGRESS_CALLBACK)(UINT Current, UINT Total, PVOID UserData);

/* ---- Functions ---------------------------------------------------------- */
HRESULT WINAPI DismInitialize(DismLogLevel LogLevel, PCWSTR LogFilePath,
                              PCWSTR ScratchDirectory);
HRESULT WINAPI DismShutdown(void);

HRESULT WINAPI DismMountImage(PCWSTR ImageFilePath, PCWSTR MountPath,
                              UINT ImageIndex, PCWSTR ImageName,
                              DismImageIdentifier ImageIdentifier, DWORD Flags,
                              HANDLE CancelEvent, DISM_PROGRESS_CALLBACK Progress,
                              PVOID UserData);
HRESULT WINAPI DismUnmountImage(PCWSTR MountPath, DWORD Flags, HANDLE CancelEvent,
                                DISM_PROGRESS_CALLBACK Progress, PVOID UserData);
HRESULT WINAPI DismRemountImage(PCWSTR MountPath);
HRESULT WINAPI DismCommitImage(DismSession Session, DWORD Flags, HANDLE CancelEvent,
                               DISM_PROGRESS_CALLBACK Progress, PVOID UserData);
HRESULT WINAPI DismOpenSession(PCWSTR ImagePath, PCWSTR WindowsDirectory,
                               PCWSTR SystemDrive, DismSession *Session);
HRESULT WINAPI DismCloseSession(DismSession Session);
HRESULT WINAPI DismGetMountedImageInfo(DismMountedImageInfo **MountedImageInfo,
                                       UINT *Count);
HRESULT WINAPI DismCleanupMountpoints(void);
HRESULT WINAPI DismGetImageInfo(PCWSTR ImageFilePath, DismImageInfo **ImageInfo,
                                UINT *Count);
HRESULT WINAPI DismDelete(VOID *DismStructure);
HRESULT WINAPI DismGetLastErrorMessage(DismString **ErrorMessage);

/* ---- Linux additions: cancel events are eventfds ------------------------ */
#define DISM_HANDLE_FROM_FD(fd) ((HANDLE) (intptr_t) ((fd) + 1))
#define DISM_FD_FROM_HANDLE(h) ((int) ((intptr_t) (h) - 1))
/* A new cancel event (an eventfd) or NULL; close it with DismCloseCancelEvent. */
HANDLE DismCreateCancelEvent(void);
HRESULT DismSetCancelEvent(HANDLE CancelEvent);
HRESULT DismCloseCancelEvent(HANDLE CancelEvent);

#ifdef __cplusplus
}
#endif

#endif /* DISMAPI_H */
