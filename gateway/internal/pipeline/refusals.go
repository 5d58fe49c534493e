package pipeline

import (
	"fmt"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Codes the gateway answers with for refusals of its own vocabulary.
const (
	CodeInvalidImage    = "invalid_image"
	CodeInvalidMetadata = "invalid_metadata"
	CodeRefused         = "request_refused"
)

// refusal is what the gateway answers for one downstream refusal. Status 0
// keeps the downstream's status.
type refusal struct {
	status  int
	code    string
	message string
}

// refusals maps a downstream's 4xx codes to the gateway's own answer. A
// downstream's message names collections, aliases, models, files and its
// own internals; none of it reaches a shopper (the log keeps the cause).
// Refusals that can only mean the gateway sent something wrong become a
// 502, not the caller's fault.
var refusals = map[string]map[string]refusal{
	"preprocess": {
		preprocessv1.CodeEmptyBody:          {http.StatusBadRequest, preprocessv1.CodeEmptyBody, "the image is empty"},
		preprocessv1.CodeUnsupportedFormat:  {http.StatusUnsupportedMediaType, preprocessv1.CodeUnsupportedFormat, "the image is not a JPEG, PNG, GIF or WebP"},
		preprocessv1.CodeCorruptImage:       {http.StatusUnprocessableEntity, preprocessv1.CodeCorruptImage, "the image data is broken or cut short"},
		preprocessv1.CodeImageTooLarge:      {http.StatusRequestEntityTooLarge, preprocessv1.CodeImageTooLarge, "the image has more bytes than are accepted"},
		preprocessv1.CodeDimensionsTooLarge: {http.StatusUnprocessableEntity, preprocessv1.CodeDimensionsTooLarge, "the image declares more pixels than are decoded"},
		preprocessv1.CodeImageTooComplex:    {0, preprocessv1.CodeImageTooComplex, "the image would take more memory to decode than is allowed"},
		preprocessv1.CodeTooManyScans:       {0, preprocessv1.CodeTooManyScans, "the image has more progressive scans than are decoded"},
		apierror.CodePayloadTooLarge:        {http.StatusRequestEntityTooLarge, preprocessv1.CodeImageTooLarge, "the image has more bytes than are accepted"},
		apierror.CodeUnsupportedMedia:       {http.StatusUnsupportedMediaType, preprocessv1.CodeUnsupportedFormat, "the image is not a JPEG, PNG, GIF or WebP"},
		apierror.CodeInvalidArgument:        {http.StatusBadGateway, CodeDownstreamError, "preprocess refused the gateway's request"},
	},
	"embed": {
		apierror.CodeNotFound:         {http.StatusBadRequest, CodeUnknownModel, "the requested model is not served"},
		apierror.CodeInvalidArgument:  {http.StatusBadGateway, CodeDownstreamError, "embed refused the gateway's request"},
		apierror.CodePayloadTooLarge:  {http.StatusBadGateway, CodeDownstreamError, "embed refused the gateway's request"},
		apierror.CodeUnsupportedMedia: {http.StatusBadGateway, CodeDownstreamError, "embed refused the gateway's request"},
	},
	"search": {
		apierror.CodeNotFound:          {http.StatusNotFound, apierror.CodeNotFound, "no such product or catalog"},
		apierror.CodeConflict:          {http.StatusConflict, apierror.CodeConflict, "the request conflicts with the catalog's current state"},
		apierror.CodeModelMismatch:     {0, apierror.CodeModelMismatch, "the model does not match the catalog's vector space"},
		apierror.CodeDimensionMismatch: {0, apierror.CodeDimensionMismatch, "the vector's dimension does not match the catalog's vector space"},
		apierror.CodeInvalidArgument:   {http.StatusBadRequest, apierror.CodeInvalidArgument, "a query parameter is out of range"},
		searchv1.CodeInvalidFilter:     {http.StatusBadRequest, searchv1.CodeInvalidFilter, "the filter is not valid (e.g. price_min above price_max)"},
		searchv1.CodeInvalidSKU:        {http.StatusBadRequest, searchv1.CodeInvalidSKU, "the SKU is empty, too long or not UTF-8"},
		searchv1.CodeInvalidPayload:    {http.StatusBadRequest, CodeInvalidMetadata, "a well-known metadata key has the wrong type"},
		searchv1.CodeInvalidName:       {http.StatusBadRequest, apierror.CodeInvalidArgument, "a model or catalog name in the request is not valid"},
		searchv1.CodeInvalidVector:     {http.StatusUnprocessableEntity, CodeInvalidImage, "the image gives no usable embedding"},
		searchv1.CodeTooManyPoints:     {http.StatusBadGateway, CodeDownstreamError, "search refused the gateway's request"},
	},
}

// refusalErr maps a downstream 4xx to the gateway's own code and message,
// keeping the downstream error as the cause for the logs.
func refusalErr(hop string, e *apierror.Error, cause error) *apierror.Error {
	switch {
	case e.Status == http.StatusTooManyRequests:
		return apierror.Wrap(cause, http.StatusTooManyRequests, apierror.CodeOverloaded, "the service is busy, retry shortly").
			WithRetryAfter(max(e.RetryAfter, 1))
	case e.Status == 499:
		return apierror.Wrap(cause, 499, "canceled", "the request was canceled")
	}
	r, ok := refusals[hop][e.Code]
	if !ok {
		r = refusal{e.Status, CodeRefused, fmt.Sprintf("the request was refused (%d)", e.Status)}
		if hop == "preprocess" {
			r = refusal{e.Status, CodeInvalidImage, "the image cannot be processed"}
		}
	}
	if r.status == 0 {
		r.status = e.Status
	}
	return apierror.Wrap(cause, r.status, r.code, "%s", r.message)
}
