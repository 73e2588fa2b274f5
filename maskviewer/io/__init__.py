"""Reading and writing files: images, masks, sessions, exports. No Qt widgets here."""
