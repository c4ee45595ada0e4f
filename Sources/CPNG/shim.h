// libpng's simplified API (png_image_*) for reading and writing (Debian: libpng-dev).
// It reports errors through png_image.message instead of longjmp, so Swift can call it.
#include <png.h>

// The composite format macros of png.h are expressions Swift does not import.
static const unsigned int cpng_format_gray = PNG_FORMAT_GRAY;
static const unsigned int cpng_format_gray_alpha = PNG_FORMAT_GA;
static const unsigned int cpng_format_rgb = PNG_FORMAT_RGB;
static const unsigned int cpng_format_rgb_alpha = PNG_FORMAT_RGBA;
