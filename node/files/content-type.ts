/** The content type of a file offer message (protocols/file/README.md §2); its own module so the CLI can use it without the node. */
export const FILE_OFFER_TYPE = 'application/vnd.parley.file-offer+json'
