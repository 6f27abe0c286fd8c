// The CPKCS11 target is declarations only (include/CPKCS11.h); SwiftPM needs one source file.
#include "CPKCS11.h"
